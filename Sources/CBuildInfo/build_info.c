#include "build_info.h"

#ifndef MODEL_AGENT_GIT_COMMIT
#define MODEL_AGENT_GIT_COMMIT "unknown"
#endif

const char *model_agent_git_commit(void) { return MODEL_AGENT_GIT_COMMIT; }
