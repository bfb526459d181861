#!/usr/bin/env bash
# End-to-end test of the Docker deployment with a real engine (`make test-deploy`; .ci/run runs it
# after `make test`). Starts dockerd when no engine answers; builds the images (docker/build-images.sh);
# runs docker-compose.yml under its own project name, with its own ports and a temporary models
# folder, and removes every container, volume and network it created, also when a step fails.
#
#  1. `compose up`: the trainer (DEPLOY_TEST_EPOCHS epochs, default 2) exits 0; student and teacher
#     become healthy (Docker's healthcheck); the time from `up` to healthy is printed.
#  2. recommend, batch, history, similar items and /v1/benchmark answer through the published ports.
#  3. the service container has no torch, runs as a non-root user with a read-only root filesystem.
#  4. a new student version (the training image exports the finished run again) and
#     POST /v1/admin/reload switch the served version while hey keeps 4 connections busy
#     (DEPLOY_TEST_LOAD_S seconds, 127.0.0.1): every request must answer 200.
#  5. profile `lb`: student replicas behind HAProxy; throughput at concurrency 16 with 1 and with 2
#     replicas (alternately, DEPLOY_TEST_LB_ROUNDS rounds of DEPLOY_TEST_LB_S seconds; medians), then
#     load while one replica is killed and started again; failed requests must not exceed
#     LB_MAX_FAILED (default 0). Skipped with DEPLOY_TEST_LB=0.
#  6. `compose down -v` leaves no container, volume or network of the project behind.
#
# SKIP_BUILD=1 uses the images as they are. Needs curl and hey (Debian: apt-get install curl hey).
set -euo pipefail
cd "$(dirname "$0")/.."
. docker/lib.sh

epochs=${DEPLOY_TEST_EPOCHS:-2}
load_s=${DEPLOY_TEST_LOAD_S:-15}
lb_s=${DEPLOY_TEST_LB_S:-10}
max_failed=${LB_MAX_FAILED:-0}
for tool in curl hey python3; do command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install $tool)"; done
ensure_docker
[ "${SKIP_BUILD:-0}" = 1 ] || docker/build-images.sh

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d /tmp/distillrec-deploy.XXXXXX)
mkdir "$work/models"
export COMPOSE_PROJECT_NAME=distillrec-deploytest-$$ HOST_MODELS_DIR=$work/models BIND_ADDRESS=127.0.0.1 \
    STUDENT_PORT=$(free_port) TEACHER_PORT=$(free_port) LB_PORT=$(free_port) STUDENT_REPLICAS=2 \
    MAX_EPOCHS=$epochs FORCE=0 HOST_UID= HOST_GID= DISTILLREC_IMAGE_TAG=${DISTILLREC_IMAGE_TAG:-local} \
    DISTILLREC_ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
project=$COMPOSE_PROJECT_NAME
# .env.example, not a developer's .env: the test runs the documented defaults (exports above win)
dc() { compose --env-file .env.example --profile lb "$@"; }
student=http://127.0.0.1:$STUDENT_PORT teacher=http://127.0.0.1:$TEACHER_PORT lb=http://127.0.0.1:$LB_PORT

cleanup() {
    local rc=$?
    jobs -p | xargs -r kill 2>/dev/null || true
    if [ "$rc" != 0 ]; then say "FAILED (exit $rc); the last log lines:"; dc logs --tail 30 >&2 || true; fi
    dc down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ids() { docker ps -aq --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1"; }
wait_healthy() {  # $@ = container ids; up to 240 s
    local id status
    for _ in $(seq 240); do
        status=$(for id in "$@"; do docker inspect -f '{{.State.Health.Status}}' "$id"; done | sort -u | tr '\n' ' ')
        [ "$status" = "healthy " ] && return 0
        sleep 1
    done
    die "containers $* not healthy after 240 s (health: $status)"
}
post() { curl -sS --fail-with-body -m 30 -H 'content-type: application/json' -d "$2" "$1"; }
# $1 = JSON, $2 = a Python expression over `r` that must hold, $3 = what it checks
check() { python3 -c "import json, sys; r = json.loads(sys.argv[1]); assert $2, sys.argv[1][:400]" "$1" || die "$3: unexpected answer"; say "ok: $3"; }
# hey's report → "requests ok failed rps"; failed = non-200 answers + transport errors
hey_summary() {
    python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text)}
errors = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\t", text.split("Error distribution:")[1], re.M)) if "Error distribution:" in text else 0
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
ok = codes.get(200, 0)
print(ok + errors + sum(n for c, n in codes.items() if c != 200), ok, errors + sum(n for c, n in codes.items() if c != 200), rps)
PY
}
load() {  # $1 = URL base, $2 = seconds, $3 = concurrency, $4 = report file
    hey -z "$2s" -c "$3" -t 10 -m POST -T application/json -d '{"user_id": "196", "k": 10}' "$1/v1/recommend" >"$4"
}

# ---- 1. compose up --------------------------------------------------------------------------------
say "compose up (project $project, trainer capped at $epochs epochs, models in $work/models)"
start=$SECONDS
dc up -d trainer student teacher >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; die "compose up failed"; }
trainer_rc=$(docker inspect -f '{{.State.ExitCode}}' "$(ids trainer)")
[ "$trainer_rc" = 0 ] || die "the trainer exited with $trainer_rc"
trained=$((SECONDS - start))
say "ok: trainer exited 0 after $trained s"
s_id=$(ids student) t_id=$(ids teacher)
wait_healthy "$s_id" "$t_id"
say "ok: student and teacher healthy $((SECONDS - start)) s after compose up (trainer $trained s)"
[ "$(stat -c %u "$work/models/ml100k-student")" = "$(stat -c %u "$work/models")" ] || die "the bundles do not belong to the owner of the models folder"

# ---- 2. the endpoints, through the published ports -----------------------------------------------
check "$(post "$student/v1/recommend" '{"user_id": "196", "k": 5}')" 'len(r["items"]) == 5 and r["model"] == "ml100k-student"' "student POST /v1/recommend"
check "$(post "$teacher/v1/recommend" '{"user_id": "196", "k": 5}')" 'len(r["items"]) == 5 and r["model"] == "ml100k-teacher"' "teacher POST /v1/recommend"
check "$(post "$student/v1/recommend/batch" '{"user_ids": ["196", "186", "22"], "k": 3}')" 'len(r["results"]) == 3' "POST /v1/recommend/batch"
check "$(post "$student/v1/recommend/history" '{"item_ids": ["242", "302", "377"], "k": 4}')" 'len(r["items"]) == 4' "POST /v1/recommend/history"
check "$(curl -sS --fail-with-body -m 30 "$student/v1/items/242/similar?k=3")" 'len(r["items"]) == 3' "GET /v1/items/242/similar"
check "$(post "$student/v1/benchmark" '{"models": ["ml100k-student", "ml100k-teacher"], "requests": 200}')" 'len(r["results"]) == 2' "POST /v1/benchmark (student vs teacher)"

# ---- 3. the service container: no torch, non-root, read-only root filesystem ----------------------
docker exec "$s_id" python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is not None)' || die "torch is importable in the service container"
uid=$(docker exec "$s_id" id -u)
[ "$uid" != 0 ] || die "the service container runs as root"
[ "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$s_id")" = true ] || die "the service container's root filesystem is writable"
! docker exec "$s_id" touch /srv/probe 2>/dev/null || die "the service container could write /srv/probe"
say "ok: service container without torch, uid $uid, read-only root filesystem"

# ---- 4. a new bundle version, reloaded under load -------------------------------------------------
version() { curl -sS -m 10 "$student/v1/models/ml100k-student" | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])'; }
old=$(version)
dc run --rm --no-deps --entrypoint distillrec trainer export --run /work/runs/ml100k-student --models-dir /models \
    --bundle ml100k-student >/dev/null 2>"$work/export.log" || { cat "$work/export.log" >&2; die "re-export failed"; }
load "$student" "$load_s" 4 "$work/reload.txt" &
load_pid=$!
sleep $((load_s / 3))
curl -sS --fail-with-body -m 60 -X POST -H "Authorization: Bearer $DISTILLREC_ADMIN_TOKEN" "$student/v1/admin/reload" >/dev/null \
    || die "POST /v1/admin/reload failed"
new=$(version)
wait "$load_pid"
read -r total ok failed rps < <(hey_summary "$work/reload.txt")
[ "$new" != "$old" ] || die "the served version is still $old after the reload"
[ "$failed" = 0 ] && [ "$total" -gt 0 ] || die "reload under load: $failed of $total requests failed: $(tail -n 12 "$work/reload.txt")"
say "ok: reload switched ml100k-student $old → $new under load: $total requests, 0 failed ($rps req/s)"

# ---- 5. replicas behind the balancer --------------------------------------------------------------
if [ "${DEPLOY_TEST_LB:-1}" != 0 ]; then
    dc up -d --no-recreate --scale students=2 students lb >"$work/up-lb.log" 2>&1 || { cat "$work/up-lb.log" >&2; die "compose --profile lb up failed"; }
    wait_healthy $(ids students) $(ids lb)
    replicas() { dc up -d --no-deps --no-recreate --scale "students=$1" students >/dev/null 2>&1; wait_healthy $(ids students); sleep 3; }
    # 1 and 2 replicas alternately, DEPLOY_TEST_LB_ROUNDS times each: the medians are compared
    rounds=${DEPLOY_TEST_LB_ROUNDS:-3} failed_all=0 rps1=() rps2=()
    for round in $(seq "$rounds"); do
        for n in 1 2; do
            replicas "$n"
            load "$lb" "$lb_s" 16 "$work/lb$n-$round.txt"
            read -r total _ failed rps < <(hey_summary "$work/lb$n-$round.txt")
            say "round $round, $n replica(s), concurrency 16, $lb_s s: $total requests, $failed failed, $rps req/s"
            failed_all=$((failed_all + failed))
            if [ "$n" = 1 ]; then rps1+=("$rps"); else rps2+=("$rps"); fi
        done
    done
    median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
    m1=$(median "${rps1[@]}") m2=$(median "${rps2[@]}")
    say "balancer throughput, median of $rounds: 1 replica $m1 req/s, 2 replicas $m2 req/s, ratio $(python3 -c "print(f'{$m2 / $m1:.2f}')")"
    victim=$(ids students | head -n1)
    load "$lb" $((3 * lb_s)) 16 "$work/kill.txt" &
    load_pid=$!
    sleep "$lb_s"; docker kill "$victim" >/dev/null; say "killed replica ${victim:0:12}"
    sleep "$lb_s"; docker start "$victim" >/dev/null; say "started replica ${victim:0:12} again"
    wait "$load_pid"
    wait_healthy "$victim"
    read -r total ok failed rps < <(hey_summary "$work/kill.txt")
    say "balancer with one replica killed and restarted: $total requests, $failed failed ($rps req/s)"
    ((failed_all == 0)) || die "$failed_all requests failed through the balancer with all replicas up"
    ((failed <= max_failed)) || die "$failed requests failed while a replica was killed (allowed: $max_failed): $(tail -n 12 "$work/kill.txt")"
fi

# ---- 6. compose down -v ---------------------------------------------------------------------------
dc down -v --remove-orphans --timeout 5 >/dev/null 2>&1
left=$(docker ps -aq --filter "label=com.docker.compose.project=$project"; docker volume ls -q --filter "label=com.docker.compose.project=$project"; docker network ls -q --filter "label=com.docker.compose.project=$project")
[ -z "$left" ] || die "compose down -v left behind: $left"
say "ok: compose down -v left no container, volume or network; deployment test passed in $SECONDS s"
