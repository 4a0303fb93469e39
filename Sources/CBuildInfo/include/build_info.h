#ifndef MODEL_AGENT_BUILD_INFO_H
#define MODEL_AGENT_BUILD_INFO_H

/* The git commit the binary was built from, or "unknown". Package.swift defines
   MODEL_AGENT_GIT_COMMIT for this one C file from the environment variable of the same
   name (scripts/image sets it), so a new commit rebuilds this file and nothing else. */
const char *model_agent_git_commit(void);

#endif
