# Shared by the bench scripts. The caller defines:
#   run_tool CASE TOOL DEST   one pull into the empty directory DEST
#   expect CASE DEST TOOL     fails unless DEST holds a complete, correct copy
# and sets `runs`, the `cases` and `tools` arrays, and `work` (a scratch directory).

declare -A times
# Row labels of the report, by case; a script may add its own.
declare -A case_labels=([big]="1 GiB object" [small]="1,000 × 100 KiB")

# Each tool once per case unmeasured (server page cache, server-side hashing), then
# `runs` rounds in which every tool runs once, so drift hits all tools alike.
measure() {
    local case tool start end
    for case in "${cases[@]}"; do
        for tool in "${tools[@]}"; do
            rm -rf "$work/dest" && mkdir -p "$work/dest" && run_tool "$case" "$tool" "$work/dest"
            expect "$case" "$work/dest" "$tool"
        done
        for _ in $(seq "$runs"); do
            for tool in "${tools[@]}"; do
                rm -rf "$work/dest" && mkdir -p "$work/dest" && sync
                start=$EPOCHREALTIME
                run_tool "$case" "$tool" "$work/dest"
                end=$EPOCHREALTIME
                expect "$case" "$work/dest" "$tool"
                times[$case,$tool]+="$(python3 -c "print(f'{$end - $start:.3f}')") "
            done
        done
    done
}

median() { python3 -c 'import statistics,sys; print(f"{statistics.median(map(float, sys.argv[1:])):.3f}")' $1; }

# report: a markdown table, model-agent's median divided by each tool's.
report() {
    local case tool ours m label
    echo
    echo "| case | tool | median s | runs (s) | model-agent ÷ tool |"
    echo "|---|---|---|---|---|"
    for case in "${cases[@]}"; do
        label="${case_labels[$case]:-$case}"
        ours=$(median "${times[$case,model-agent]}")
        for tool in "${tools[@]}"; do
            m=$(median "${times[$case,$tool]}")
            echo "| $label | $tool | $m | ${times[$case,$tool]% } | $(python3 -c "print(f'{$ours / $m:.2f}')") |"
        done
    done
    echo
}

# make_data DIR: DIR/big/weights.bin (1 GiB) and DIR/small/f0000.bin … f0999.bin (100 KiB each).
make_data() {
    mkdir -p "$1/big" "$1/small"
    head -c $((1 << 30)) /dev/urandom >"$1/big/weights.bin"
    python3 - "$1/small" <<'PY'
import os, sys
for i in range(1000):
    with open(os.path.join(sys.argv[1], "f%04d.bin" % i), "wb") as f:
        f.write(os.urandom(100 * 1024))
PY
}
