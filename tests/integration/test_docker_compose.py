"""docker-compose.yml, .env.example and docker/prometheus.yml, checked without a Docker engine.

``docker-compose config`` (Debian's ``docker-compose`` package; ``.ci/run``'s machine installs it)
validates and renders the file; the rendered services are then checked for what the deployment
relies on: the trainer → APIs ordering, healthchecks, read-only bundles, the monitoring profile.
Only the ``docker-compose config`` tests skip, and only when the binary is absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
PROMETHEUS = REPO / "docker" / "prometheus.yml"
BUILD_BUNDLES = REPO / "docker" / "build-bundles.sh"
APIS = ("student", "teacher")


def _compose_binary() -> str:
    found = shutil.which("docker-compose")
    if not found:
        pytest.skip("Debian's docker-compose is not installed (apt-get install docker-compose); the compose file cannot be validated here")
    return found


def compose_config(env_file: Path, *extra: str) -> dict:
    """``docker-compose --env-file ENV config`` of the repository's compose file, parsed."""
    cmd = [_compose_binary(), "--project-directory", str(REPO), "-f", str(COMPOSE), "--env-file", str(env_file), *extra, "config"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"docker-compose config rejected docker-compose.yml:\n{proc.stderr}"
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    """The compose file rendered with defaults only (an empty env file: nothing from a developer's .env)."""
    empty = tmp_path_factory.mktemp("compose") / "empty.env"
    empty.write_text("")
    return compose_config(empty)["services"]


# -------------------------------------------------------------- normalising v1 / v2 output
def _volumes(service: dict) -> list[dict]:
    """Volumes as {source, target, read_only} whether rendered short ("src:dst:ro", v1) or long (v2)."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            out.append({"source": parts[0], "target": parts[1], "read_only": len(parts) > 2 and "ro" in parts[2].split(",")})
        else:
            out.append({"source": v.get("source"), "target": v["target"], "read_only": bool(v.get("read_only"))})
    return out


def _ports(service: dict) -> list[tuple[str, str, str]]:
    """Published ports as (host_ip, host_port, container_port)."""
    out = []
    for p in service.get("ports", []):
        if isinstance(p, str):
            host_ip, host_port, target = p.split("/")[0].rsplit(":", 2)
            out.append((host_ip, host_port, target))
        else:
            out.append((p.get("host_ip", ""), str(p.get("published")), str(p["target"])))
    return out


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def _seconds(value) -> float:
    """Compose durations ("5s", "1m30s", or nanoseconds as an int) in seconds."""
    if isinstance(value, (int, float)):
        return value / 1e9
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|h|m|s)", value))


# -------------------------------------------------------------- docker-compose config
def test_compose_config_accepts_the_file_with_env_example_and_profiles():
    for extra in ((), ("--profile", "monitoring")):
        services = compose_config(ENV_EXAMPLE, *extra)["services"]
        assert {"trainer", "student", "teacher", "prometheus"} <= set(services)


def test_apis_start_only_after_the_trainer_completed_successfully(rendered):
    assert rendered["trainer"].get("restart", "no") == "no", "the trainer is one-shot"
    assert "depends_on" not in rendered["trainer"]
    for name in APIS:
        deps = rendered[name]["depends_on"]
        assert deps["trainer"]["condition"] == "service_completed_successfully", f"{name} must wait for the trainer to exit 0"


def test_apis_have_short_healthchecks_on_readyz_with_a_start_period(rendered):
    probe = (REPO / "docker" / "healthcheck.py").read_text()
    assert "/readyz" in probe
    for name in APIS:
        hc = rendered[name]["healthcheck"]
        assert hc["test"][0] in ("CMD", "CMD-SHELL") and "/usr/local/bin/distillrec-healthcheck" in " ".join(hc["test"])
        assert _seconds(hc["interval"]) <= 10 and _seconds(hc["timeout"]) <= _seconds(hc["interval"])
        assert _seconds(hc["start_period"]) > 0 and int(hc["retries"]) >= 1


def test_apis_mount_the_bundles_read_only_and_the_trainer_writes_them(rendered):
    models = str(REPO / "models")
    for name in APIS:
        mounts = {v["target"]: v for v in _volumes(rendered[name])}
        assert mounts["/models"]["source"] == models and mounts["/models"]["read_only"], f"{name}: ./models must be mounted read-only at /models"
        assert _env(rendered[name])["DISTILLREC_MODELS_DIR"] == "/models"
        assert rendered[name].get("read_only") is True, f"{name}: the container's root filesystem should be read-only"
    trainer = {v["target"]: v for v in _volumes(rendered["trainer"])}
    assert trainer["/models"]["source"] == models and not trainer["/models"]["read_only"]
    assert _env(rendered["trainer"])["DISTILLREC_MODELS_DIR"] == "/models"


def test_student_and_teacher_are_one_image_with_different_default_models_and_ports(rendered):
    student, teacher, trainer = rendered["student"], rendered["teacher"], rendered["trainer"]
    assert student["image"] == teacher["image"] and student["build"] == teacher["build"]
    assert student["build"]["dockerfile"] == "docker/service.Dockerfile"
    assert trainer["build"]["dockerfile"] == "docker/training.Dockerfile"
    s_env, t_env, tr_env = _env(student), _env(teacher), _env(trainer)
    assert s_env["DISTILLREC_DEFAULT_MODEL"] == tr_env["STUDENT_BUNDLE"], "the student API must default to the bundle the trainer exports"
    assert t_env["DISTILLREC_DEFAULT_MODEL"] == tr_env["TEACHER_BUNDLE"]
    assert s_env["DISTILLREC_DEFAULT_MODEL"] != t_env["DISTILLREC_DEFAULT_MODEL"]
    s_ports, t_ports = _ports(student), _ports(teacher)
    assert [p[2] for p in s_ports] == ["8000"] and [p[2] for p in t_ports] == ["8000"]
    assert s_ports[0][1] != t_ports[0][1], "the two APIs need different host ports"
    assert all(p[0] == "127.0.0.1" for p in s_ports + t_ports), "by default the APIs are published on 127.0.0.1 only"


def test_prometheus_is_optional_under_the_monitoring_profile(rendered):
    assert rendered["prometheus"]["profiles"] == ["monitoring"]
    assert all("profiles" not in rendered[name] for name in ("trainer", *APIS)), "the default `up` must not need a profile"
    mounts = {v["target"]: v for v in _volumes(rendered["prometheus"])}
    assert mounts["/etc/prometheus/prometheus.yml"]["source"] == str(PROMETHEUS) and mounts["/etc/prometheus/prometheus.yml"]["read_only"]


def test_api_environment_only_names_real_service_settings(rendered):
    from service.settings import Settings

    known = {f"DISTILLREC_{name.upper()}" for name in Settings.model_fields}
    for name in APIS:
        passed = {k for k in _env(rendered[name]) if k.startswith("DISTILLREC_")}
        assert passed == known, f"{name}: unknown {sorted(passed - known)}, not passed {sorted(known - passed)}"


def test_trainer_environment_is_read_by_the_bundle_script(rendered):
    script = BUILD_BUNDLES.read_text()
    env = _env(rendered["trainer"])
    for key in env:
        if key.startswith("DISTILLREC_CACHE_DIR") or key == "OMP_NUM_THREADS":
            continue  # read by distillrec itself / by torch and FAISS
        assert f"${{{key}" in script, f"the trainer passes {key}, which docker/build-bundles.sh never reads"
    assert rendered["trainer"]["entrypoint"][-1] == "/usr/local/bin/distillrec-build-bundles"
    assert "COPY docker/build-bundles.sh /usr/local/bin/distillrec-build-bundles" in (REPO / "docker" / "training.Dockerfile").read_text()


# -------------------------------------------------------------- .env.example, prometheus.yml (no binary needed)
def _documented(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file, commented-out ones (``# KEY=value``) included."""
    pairs = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", path.read_text(), flags=re.M)
    return {k: v for k, v in pairs}


def test_env_example_documents_every_service_setting_and_validates():
    from service.settings import Settings

    documented = _documented(ENV_EXAMPLE)
    for name, field in Settings.model_fields.items():
        key = f"DISTILLREC_{name.upper()}"
        assert key in documented, f".env.example does not document {key} ({field.description})"
    settings = Settings(_env_file=ENV_EXAMPLE)  # the example's values must be valid settings
    defaults = Settings(_env_file=None)
    for name in ("max_k", "max_batch", "max_history", "ort_threads", "benchmark_max_requests", "warmup_requests", "log_level"):
        assert getattr(settings, name) == getattr(defaults, name), (
            f".env.example shows {name}={getattr(settings, name)!r}, the default is {getattr(defaults, name)!r}"
        )
    assert not settings.default_model and not settings.admin_token.get_secret_value(), "empty values must mean 'unset'"


def test_env_example_documents_every_variable_the_compose_file_uses():
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    missing = used - set(_documented(ENV_EXAMPLE))
    assert not missing, f"docker-compose.yml uses {sorted(missing)}, which .env.example does not document"


def test_prometheus_scrapes_both_apis_metrics_endpoint():
    from service.app import create_app
    from service.settings import Settings

    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = config["scrape_configs"]
    targets = {t for job in jobs for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:8000" for name in APIS}, "Prometheus must scrape the compose services on their container port"
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs)
    paths = set(create_app(Settings(_env_file=None)).openapi()["paths"])
    assert {"/metrics", "/readyz"} <= paths
