#!/bin/sh
# The one-shot `trainer` of docker-compose.yml (also usable outside Docker):
#   1. trains the teacher            (distillrec train   --config $TEACHER_CONFIG)
#   2. distils the student from it   (distillrec distill --config $STUDENT_CONFIG; KD_METHODS overrides its methods)
#   3. exports both as bundles into $DISTILLREC_MODELS_DIR (distillrec export), where the APIs read them.
# Idempotent: a finished run (result.json) is reused and a bundle that already has a LATEST is kept,
# so a second `docker compose up` starts the APIs in seconds; FORCE=1 retrains and re-exports.
# Every variable is documented in .env.example; MAX_EPOCHS caps training (smoke tests, CI).
set -eu

models_dir=${DISTILLREC_MODELS_DIR:-/models}
runs_dir=${RUNS_DIR:-/work/runs}
teacher_config=${TEACHER_CONFIG:-configs/ml-100k/lightgcn-teacher.yaml}
student_config=${STUDENT_CONFIG:-configs/ml-100k/demo-student.yaml}
teacher_bundle=${TEACHER_BUNDLE:-ml100k-teacher}
student_bundle=${STUDENT_BUNDLE:-ml100k-student}
kd_methods=${KD_METHODS:-}
max_epochs=${MAX_EPOCHS:-}
index=${INDEX:-flat}
force=${FORCE:-0}

teacher_run="$runs_dir/$teacher_bundle"
student_run="$runs_dir/$student_bundle"

say() { printf '[build-bundles %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# Compose starts the trainer as root with RUN_AS_MODELS_OWNER=1: switch at once to the owner of the
# models folder (the host's ./models), so that the bundles belong to whoever owns it — any UID.
if [ "${RUN_AS_MODELS_OWNER:-0}" = 1 ] && [ "$(id -u)" = 0 ] && [ -d "$models_dir" ]; then
    owner=$(stat -c %u:%g "$models_dir")
    if [ "$owner" != 0:0 ]; then
        say "running as $owner, the owner of $models_dir"
        exec setpriv --reuid="${owner%:*}" --regid="${owner#*:}" --clear-groups env RUN_AS_MODELS_OWNER=0 sh "$0" "$@"
    fi
fi

# train/distil only when the run has no result.json yet (or FORCE=1); $1 = run folder, rest = command
fit() {
    run=$1; shift
    if [ "$force" != 1 ] && [ -f "$run/result.json" ]; then
        say "reusing the finished run $run"
        return 0
    fi
    if [ "$force" = 1 ]; then rm -rf "$run"; fi
    if [ -n "$max_epochs" ]; then set -- "$@" --set "train.epochs=$max_epochs"; fi
    say "distillrec $*"
    distillrec "$@" --out "$run" --resume --no-progress
}

# export only when the bundle has no LATEST yet (or FORCE=1); $1 = run folder, $2 = bundle name
publish() {
    if [ "$force" != 1 ] && [ -f "$models_dir/$2/LATEST" ]; then
        say "keeping $models_dir/$2 (version $(cat "$models_dir/$2/LATEST")); FORCE=1 re-exports"
        return 0
    fi
    say "distillrec export --run $1 --bundle $2 --index $index"
    distillrec export --run "$1" --models-dir "$models_dir" --bundle "$2" --index "$index" >/dev/null
    say "published $models_dir/$2/$(cat "$models_dir/$2/LATEST")"
}

if [ "$force" != 1 ] && [ -f "$models_dir/$teacher_bundle/LATEST" ] && [ -f "$models_dir/$student_bundle/LATEST" ]; then
    say "both bundles exist in $models_dir ($teacher_bundle, $student_bundle); nothing to do (FORCE=1 rebuilds)"
    exit 0
fi
mkdir -p "$runs_dir" "$models_dir"
fit "$teacher_run" train --config "$teacher_config" --set "name=$teacher_bundle"
publish "$teacher_run" "$teacher_bundle"
if [ -n "$kd_methods" ]; then
    fit "$student_run" distill --config "$student_config" --teacher "$teacher_run" --set "name=$student_bundle" --set "distill.methods=$kd_methods"
else
    fit "$student_run" distill --config "$student_config" --teacher "$teacher_run" --set "name=$student_bundle"
fi
publish "$student_run" "$student_bundle"
say "done: $(ls "$models_dir" | tr '\n' ' ')"
