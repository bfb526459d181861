"""The scale-out and build tooling around the Docker images, checked without a Docker engine.

The `lb` compose profile (student replicas behind HAProxy) and docker/haproxy.cfg fit together;
docker/build-images.sh rejects bad inputs before it touches Docker; the Makefile's install keeps the
demo's install to what the demo needs and reaches for PyTorch's CPU index with a short timeout.
The real thing — images built, containers started, load through the balancer while a replica dies —
is `make test-deploy` (docker/test-deploy.sh).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from test_docker_compose import ENV_EXAMPLE, _env, _ports, _volumes, compose_config

REPO = Path(__file__).resolve().parents[2]
HAPROXY = (REPO / "docker" / "haproxy.cfg").read_text()
BUILD = REPO / "docker" / "build-images.sh"


@pytest.fixture(scope="module")
def lb_services() -> dict:
    return compose_config(ENV_EXAMPLE, "--profile", "lb")["services"]


def test_lb_profile_runs_replicas_without_host_ports_behind_the_balancer(lb_services):
    students, lb, student = lb_services["students"], lb_services["lb"], lb_services["student"]
    assert students["image"] == student["image"], "the replicas run the service image"
    assert not students.get("ports"), "replicas cannot share a fixed host port"
    assert students["read_only"] is True and students["healthcheck"]["test"] == student["healthcheck"]["test"]
    assert _env(students)["DISTILLREC_DEFAULT_MODEL"] == _env(student)["DISTILLREC_DEFAULT_MODEL"]
    assert {"source": str(REPO / "docker" / "haproxy.cfg"), "target": "/usr/local/etc/haproxy/haproxy.cfg", "read_only": True} in _volumes(lb)
    assert lb["depends_on"]["students"]["condition"] == "service_healthy"
    ((host_ip, _, target),) = _ports(lb)
    assert host_ip == "127.0.0.1" and target == re.search(r"bind :(\d+)", HAPROXY).group(1)
    assert lb["read_only"] is True and "ALL" in lb["cap_drop"]


def test_lb_services_exist_only_under_their_profile(lb_services):
    assert lb_services["students"]["profiles"] == ["lb"] and lb_services["lb"]["profiles"] == ["lb"]
    assert "profiles" not in lb_services["student"] and "profiles" not in lb_services["teacher"]


def test_haproxy_finds_the_replicas_by_service_name_and_routes_by_readiness(lb_services):
    template = re.search(r"server-template \w+ \"\$\{LB_MAX_REPLICAS\}\" (\S+):(\d+)", HAPROXY)
    assert template, "the backend must fill its servers from DNS (server-template)"
    assert template.group(1) == "students" and template.group(1) in lb_services
    assert template.group(2) == re.search(r"UVICORN_PORT=(\d+)", (REPO / "docker" / "service.Dockerfile").read_text()).group(1)
    assert "LB_MAX_REPLICAS" in _env(lb_services["lb"])
    assert "nameserver dns 127.0.0.11:53" in HAPROXY, "Docker's embedded DNS"
    assert "option httpchk GET /readyz" in HAPROXY and "http-check expect status 200" in HAPROXY
    assert re.search(r"default-server .*\bcheck\b.*\bresolvers docker\b", HAPROXY)


def test_haproxy_retries_failed_reads_elsewhere_but_never_admin_or_benchmark():
    retry_on = re.search(r"retry-on (.+)", HAPROXY).group(1).split()
    assert {"conn-failure", "empty-response"} <= set(retry_on), "a killed replica must cost no request"
    assert re.search(r"option redispatch 1\b", HAPROXY), "each retry must go to another replica"
    assert int(re.search(r"\bretries (\d+)", HAPROXY).group(1)) >= 2
    assert re.search(r"http-request disable-l7-retry if \{ path_beg /v1/admin /v1/benchmark \}", HAPROXY)


def _build(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(BUILD), *args], cwd=REPO, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **env}
    )


def test_build_script_explains_itself_and_rejects_bad_inputs_before_using_docker(tmp_path):
    help_ = _build("--help")
    assert help_.returncode == 0 and "--wheelhouse DIR" in help_.stdout and "--ca-bundle FILE" in help_.stdout
    bad = _build("trainingg")
    assert bad.returncode != 0 and "unknown argument 'trainingg'" in bad.stderr and "training service lb" in bad.stderr
    missing = _build("--wheelhouse", str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "no such folder" in missing.stderr and "pip download torch==" in missing.stderr
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("not a certificate\n")
    bad_ca = _build("--ca-bundle", str(not_pem))
    assert bad_ca.returncode != 0 and "holds no PEM certificate" in bad_ca.stderr
    assert not (REPO / "docker" / "certs" / "extra-ca.crt").exists(), "a failed build leaves no certificate behind"


def _make_dry_run(target: str, tmp_path: Path) -> str:
    venv = tmp_path / "venv"
    proc = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_demo_installs_only_what_the_demo_needs_and_test_installs_the_test_tools(tmp_path):
    demo, test = _make_dry_run("demo", tmp_path), _make_dry_run("test", tmp_path)
    assert "-e '.[train,serve]'" in demo and ",dev" not in demo
    assert "-e '.[train,serve,dev]'" in test


def test_install_takes_torch_from_the_cpu_index_only_when_it_answers_quickly(tmp_path):
    demo = _make_dry_run("demo", tmp_path)
    probe = re.search(r"urlopen\('(https://download\.pytorch\.org/whl/cpu)/torch/', timeout=(\d+)\)", demo)
    assert probe and int(probe.group(2)) <= 10, "the reachability probe must give up within seconds"
    assert f"--index-url {probe.group(1)} " in demo and demo.index("--index-url") > demo.index("urlopen")
    assert "--quiet" not in demo, "the install shows pip's progress"


def _lib(snippet: str, path: str, tmp_path: Path) -> subprocess.CompletedProcess:
    script = f". {REPO / 'docker' / 'lib.sh'}; {snippet}"
    return subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30, env={"PATH": path})


def test_the_stand_in_base_image_uses_the_mirror_apt_already_uses(tmp_path):
    one_line = tmp_path / "sources.list"
    one_line.write_text(
        "# a comment\ndeb [signed-by=/k.gpg] http://security.debian.org/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
    )
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: https://deb822.example/debian\nSuites: bookworm\n")
    found = _lib(f"debian_mirror {tmp_path}/missing.list {one_line} {deb822}", "/usr/bin:/bin", tmp_path)
    assert found.returncode == 0 and found.stdout.strip() == "http://mirror.example/debian"
    found = _lib(f"debian_mirror {tmp_path}/missing.list {deb822}", "/usr/bin:/bin", tmp_path)
    assert found.stdout.strip() == "https://deb822.example/debian"
    none = _lib(f'set -euo pipefail; m=$(debian_mirror {tmp_path}/missing.list); echo "[$m]"', "/usr/bin:/bin", tmp_path)
    assert none.returncode == 0 and none.stdout.strip() == "[]", "no mirror must not abort a `set -e` script silently"


@pytest.mark.parametrize("plugin", [True, False])
def test_compose_runs_whichever_spelling_is_installed(tmp_path, plugin):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {
        "docker": f'if [ "$1 $2" = "compose version" ]; then exit {0 if plugin else 1}; fi; echo "docker $*"',
        "docker-compose": 'echo "docker-compose $*"',
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    out = _lib("compose --profile lb up -d", f"{bin_dir}:/usr/bin:/bin", tmp_path)
    assert out.returncode == 0
    assert out.stdout.strip() == ("docker compose --profile lb up -d" if plugin else "docker-compose --profile lb up -d")
