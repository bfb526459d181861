"""docker/service.Dockerfile and docker/training.Dockerfile, checked without a Docker engine.

* Static: the Dockerfiles are parsed (stages, ARG defaults, RUN/COPY/ENV/USER/HEALTHCHECK/CMD); the
  service image's ``pip install`` targets are resolved through pyproject.toml (extras expanded,
  self-references followed) and the test fails if torch could be installed; every COPY source exists
  and survives .dockerignore.
* Live: the service Dockerfile's build-stage COPY lines are replayed into a temporary build context,
  its exact ``pip install`` arguments run into a fresh virtualenv, and its exact CMD (uvicorn) is
  started with the image's ENV — only the bind address/port (127.0.0.1, a free port) and the models
  dir (a read-only copy of a tiny exported bundle) are overridden, as ``docker run -e`` would. The
  test waits for ``/readyz``, asks for a recommendation, runs the HEALTHCHECK probe, and asserts that
  torch is neither installed nor importable in that virtualenv.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
SERVICE = REPO / "docker" / "service.Dockerfile"
TRAINING = REPO / "docker" / "training.Dockerfile"
HEALTHCHECK = REPO / "docker" / "healthcheck.py"
HOST = "127.0.0.1"


# ------------------------------------------------------------------------------ Dockerfile parsing
@dataclass
class Stage:
    """One build stage: its base image, name and instructions as (KEYWORD, arguments)."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def _substitute(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def parse_dockerfile(path: Path) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments dropped, ARG defaults substituted."""
    logical, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1].strip() + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, f"{path}: a continuation line ends the file"
    stages: list[Stage] = []
    args: dict[str, str] = {}
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            if default:
                args[name] = default.strip('"')
            continue
        rest = _substitute(rest, args)
        if keyword == "FROM":
            parts = rest.split()
            stages.append(Stage(base=parts[0], name=parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None))
        else:
            assert stages, f"{path}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, rest))
    return stages


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD arguments in JSON (exec) form."""
    value = json.loads(args)
    assert isinstance(value, list), f"use the exec (JSON) form: {args}"
    return value


def env_of(stage: Stage) -> dict[str, str]:
    """The ENV of a stage (``KEY=value`` pairs; ``$PATH``-style references resolved in order)."""
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for token in shlex.split(args):
            key, _, value = token.partition("=")
            env[key] = _substitute(value, {**os.environ, **env})
    return env


def pip_installs(stage: Stage) -> list[list[str]]:
    """Arguments after ``pip install`` of every pip install command in the stage's RUN lines."""
    out = []
    for run in stage.all("RUN"):
        for command in re.split(r"&&|;", run):
            tokens = shlex.split(command)
            for i in range(len(tokens) - 1):
                if tokens[i].endswith("pip") and tokens[i + 1] == "install":
                    out.append(tokens[i + 2 :])
                    break
    return out


OPTIONS_WITH_VALUE = {
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--target",
    "-t",
    "--prefix",
    "--root",
}


def install_targets(args: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """(requirement targets, options with values) of ``pip install`` arguments."""
    targets, options, i = [], {}, 0
    while i < len(args):
        a = args[i]
        if a in OPTIONS_WITH_VALUE:
            options.setdefault(a, []).append(args[i + 1])
            i += 2
            continue
        if a.startswith("-"):
            key, _, value = a.partition("=")
            options.setdefault(key, []).append(value)
        else:
            targets.append(a)
        i += 1
    return targets, options


# ------------------------------------------------------------------------------ torch reachability
TORCH_FAMILY = re.compile(r"^(torch|torchvision|torchaudio|triton|pytorch-.*|nvidia-.*)$")
LOCAL_TARGET = re.compile(r"^(?P<path>\.|\.?/[^\[]*)(\[(?P<extras>[^\]]*)\])?$")


def project_requirements(pyproject: Path, extras: set[str]) -> set[str]:
    """Names of everything ``pip install 'DIR[extras]'`` declares: the dependencies, the extras, and
    the extras of any self-reference (``distillrec[train]``) followed transitively."""
    project = tomllib.loads(pyproject.read_text())["project"]
    me = canonicalize_name(project["name"])
    optional = project.get("optional-dependencies", {})
    unknown = extras - set(optional)
    assert not unknown, f"{pyproject}: no extra(s) {sorted(unknown)}"
    names, todo, seen = set(), [*project.get("dependencies", []), *(r for e in extras for r in optional[e])], set(extras)
    while todo:
        req = Requirement(todo.pop())
        name = canonicalize_name(req.name)
        if name != me:
            names.add(name)
            continue
        for extra in req.extras - seen:
            seen.add(extra)
            todo += optional.get(extra, [])
    return names


def torch_reachable(stages: list[Stage], context: Path) -> list[str]:
    """Why the image described by ``stages`` would (could) install torch; empty when it cannot."""
    why = []
    for stage in stages:
        for args in pip_installs(stage):
            targets, options = install_targets(args)
            for url in options.get("--index-url", []) + options.get("-i", []) + options.get("--extra-index-url", []):
                if "pytorch.org" in url:
                    why.append(f"pip install uses the PyTorch index {url}")
            for req_file in options.get("-r", []) + options.get("--requirement", []):
                why.append(f"pip install -r {req_file}: requirement files are not resolved by this test; list packages explicitly")
            for target in targets:
                local = LOCAL_TARGET.match(target)
                if local:
                    extras = {e.strip() for e in (local.group("extras") or "").split(",") if e.strip()}
                    names = project_requirements(context / local.group("path") / "pyproject.toml", extras)
                else:
                    names = {canonicalize_name(Requirement(target).name)}
                why += [f"pip install {target} brings {n}" for n in sorted(names) if TORCH_FAMILY.match(n)]
    return why


# ------------------------------------------------------------------------------ static checks
def test_service_image_cannot_install_torch():
    stages = parse_dockerfile(SERVICE)
    installs = [args for s in stages for args in pip_installs(s)]
    assert installs, "the service Dockerfile installs nothing?"
    targets = [t for args in installs for t in install_targets(args)[0]]
    assert targets == [".[serve]"], f"the service image must install exactly the package with its serve extra, got {targets}"
    assert torch_reachable(stages, REPO) == []
    # the serve extra itself: what it resolves to (torch-free) and what it must contain
    serve = project_requirements(REPO / "pyproject.toml", {"serve"})
    assert {"fastapi", "uvicorn", "onnxruntime", "faiss-cpu", "pydantic-settings", "prometheus-client", "threadpoolctl"} <= serve


def test_the_torch_check_would_catch_torch(tmp_path):
    """The reachability check fails when torch sneaks in: through a self-referencing extra, directly, or an index."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "distillrec"\nversion = "0"\ndependencies = ["numpy"]\n'
        '[project.optional-dependencies]\ntrain = ["torch==2.13.0"]\nserve = ["fastapi", "distillrec[train]"]\ndev = ["pytest"]\n'
    )
    dockerfile = tmp_path / "Dockerfile"
    for body in (
        'RUN pip install ".[serve]"',
        "RUN pip install --no-cache-dir fastapi torchvision",
        'RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu ".[dev]"',
    ):
        dockerfile.write_text(f"FROM python:3.11-slim\nWORKDIR /src\n{body}\n")
        assert torch_reachable(parse_dockerfile(dockerfile), tmp_path), f"not caught: {body}"
    dockerfile.write_text('FROM python:3.11-slim\nRUN python -m venv /v && pip install --no-cache-dir ".[dev]"\n')
    assert torch_reachable(parse_dockerfile(dockerfile), tmp_path) == []


def test_service_image_is_slim_non_root_with_a_readyz_healthcheck():
    stages = parse_dockerfile(SERVICE)
    final = stages[-1]
    assert all(re.match(r"python:3\.11-slim", s.base) for s in stages), [s.base for s in stages]
    user = final.last("USER")
    assert user and user.split(":")[0] not in ("0", "root"), "the service must not run as root"
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck, "the service image needs a HEALTHCHECK"
    options, _, command = healthcheck.partition(" CMD ")
    assert {"--interval", "--timeout", "--start-period", "--retries"} <= {o.split("=")[0] for o in options.split()}
    assert exec_form(command)[-1] == "/usr/local/bin/distillrec-healthcheck"
    assert "COPY docker/healthcheck.py /usr/local/bin/distillrec-healthcheck" in [f"COPY {a}" for a in final.all("COPY")]
    assert "/readyz" in HEALTHCHECK.read_text()
    env = env_of(final)
    assert env["DISTILLREC_MODELS_DIR"] == "/models" and env["UVICORN_HOST"] == "0.0.0.0" and env["UVICORN_PORT"] == "8000"
    assert exec_form(final.last("CMD"))[:2] == ["uvicorn", "service.main:app"]
    assert final.all("EXPOSE") == ["8000"]
    assert not any("pip install" in r for r in final.all("RUN")), "the runtime stage copies the built virtualenv; it installs nothing"


def test_training_image_installs_the_pinned_cpu_torch_and_the_train_extra():
    stages = parse_dockerfile(TRAINING)
    (stage,) = stages
    installs = pip_installs(stage)
    pinned = [r for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"] if Requirement(r).name == "torch"]
    (torch_args,) = [a for a in installs if any(t.startswith("torch") for t in install_targets(a)[0])]
    targets, options = install_targets(torch_args)
    assert targets == pinned == ["torch==2.13.0"], "the image's torch must be the pyproject pin"
    assert options.get("--index-url") == ["https://download.pytorch.org/whl/cpu"], "torch comes from the CPU wheel index inside Docker"
    assert [install_targets(a)[0] for a in installs if a is not torch_args] == [[".[train]"]]
    assert exec_form(stage.last("ENTRYPOINT")) == ["distillrec"]
    assert stage.last("USER").split(":")[0] not in ("0", "root")


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether .dockerignore ``patterns`` exclude ``path`` (or a folder above it); last match wins."""

    def match(pattern: str, candidate: str) -> bool:
        regex = re.escape(pattern.strip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        return re.fullmatch(regex, candidate) is not None

    parts = Path(path).parts
    excluded = False
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for p in patterns:
            if p.startswith("!"):
                if match(p[1:], prefix):
                    excluded = False
            elif match(p, prefix):
                excluded = True
        if excluded:
            return True
    return excluded


def test_every_copy_source_exists_and_is_in_the_build_context():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert _dockerignore_excludes(patterns, ".venv/bin/python") and _dockerignore_excludes(patterns, "models/x/LATEST")
    assert _dockerignore_excludes(patterns, ".env") and not _dockerignore_excludes(patterns, ".env.example")
    for dockerfile in (SERVICE, TRAINING):
        for stage in parse_dockerfile(dockerfile):
            for args in stage.all("COPY"):
                if args.startswith("--from"):
                    continue
                *sources, _dest = [a for a in args.split() if not a.startswith("--")]
                for src in sources:
                    path = REPO / src
                    assert path.exists(), f"{dockerfile.name}: COPY {src}: no such file"
                    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                    kept = [f for f in files if not _dockerignore_excludes(patterns, str(f.relative_to(REPO)))]
                    assert kept, f"{dockerfile.name}: COPY {src}: .dockerignore excludes all of it"
    assert not _dockerignore_excludes(patterns, "service/main.py") and not _dockerignore_excludes(patterns, "pyproject.toml")


# ------------------------------------------------------------------------------ live: install + start outside Docker
def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _replay_copies(stage: Stage, context: Path) -> None:
    """Copies what the stage's COPY lines take from the build context into ``context`` (paths kept)."""
    for args in stage.all("COPY"):
        *sources, dest = [a for a in args.split() if not a.startswith("--")]
        for src in sources:
            target = context / src
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / src).is_dir():
                shutil.copytree(REPO / src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(REPO / src, target)


def _read_only(root: Path, on: bool) -> None:
    """chmod a tree read-only (as the `:ro` mount is) or back."""
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) if on else mode | stat.S_IWUSR)


def _get(url: str, timeout: float = 5) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


class Server:
    """The image's CMD started outside Docker (stopped with terminate/kill on exit)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, port: int):
        self.port, self.log = port, cwd / f"server-{port}.log"
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def wait(self, path: str, want: set[int], timeout: float = 90) -> tuple[int, dict]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, body = _get(self.url(path), timeout=2)
                if status in want:
                    return status, body
            except (OSError, ValueError):
                pass
            assert self.proc.poll() is None, f"the server exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{path} did not answer {want} within {timeout} s:\n{self.log.read_text()[-3000:]}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def service_venv(tmp_path_factory):
    """A fresh virtualenv holding exactly what the service image's `pip install` line installs."""
    stages = parse_dockerfile(SERVICE)
    build, runtime = stages[0], stages[-1]
    (install_args,) = pip_installs(build)
    root = tmp_path_factory.mktemp("service-image")
    context, venv = root / "src", root / "venv"
    _replay_copies(build, context)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # the image's exact `pip install` arguments, run by this interpreter's pip into the new venv
    # (pip's --python; saves installing pip itself); pip's own configuration (cache, index) applies
    cmd = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", *install_args]
    proc = subprocess.run(cmd, cwd=context, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"`pip install {shlex.join(install_args)}` failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    yield {"venv": venv, "runtime": runtime, "root": root}
    shutil.rmtree(root, ignore_errors=True)  # a few hundred MB: do not leave it to pytest's basetemp rotation


def _image_env(runtime: Stage, venv: Path, models: Path, port: int) -> dict[str, str]:
    """The image's ENV (its /opt/venv replaced by ``venv``), plus what `docker run -e` would override."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISTILLREC_", "UVICORN_", "VIRTUAL_ENV", "PYTHON"))}
    image_env = env_of(runtime)
    image_env["PATH"] = image_env["PATH"].replace("/opt/venv", str(venv))
    env.update(image_env)
    env.update({"DISTILLREC_MODELS_DIR": str(models), "UVICORN_HOST": HOST, "UVICORN_PORT": str(port)})
    return env


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_service_image_installs_without_torch_and_serves_from_read_only_bundles(service_venv, tmp_path):
    from svc_support import copy_models

    venv, runtime = service_venv["venv"], service_venv["runtime"]
    python = venv / "bin" / "python"
    # torch is neither installed nor importable in what the image installs
    probe = "import importlib.metadata as m, importlib.util as u, json; print(json.dumps([sorted(d.metadata['Name'].lower() for d in m.distributions()), u.find_spec('torch') is not None]))"
    installed, importable = json.loads(subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path).stdout)
    assert not importable, "torch is importable in the service image's environment"
    assert not [n for n in installed if TORCH_FAMILY.match(canonicalize_name(n))], f"torch-family packages installed: {installed}"
    assert {"distillrec", "fastapi", "uvicorn", "onnxruntime", "faiss-cpu"} <= {canonicalize_name(n) for n in installed}

    models = copy_models(tmp_path / "models", "student")
    _read_only(models, True)
    workdir = tmp_path / "srv"  # the image's WORKDIR: no sources there, `service` must come from the venv
    workdir.mkdir()
    argv = exec_form(runtime.last("CMD"))
    port = _free_port()
    env = _image_env(runtime, venv, models, port)
    argv[0] = shutil.which(argv[0], path=env["PATH"]) or argv[0]
    assert argv[0].startswith(str(venv)), f"{argv[0]} is not the virtualenv's"
    server = Server(argv, env, workdir, port)
    try:
        status, ready = server.wait("/readyz", {200})
        assert [b["name"] for b in ready["loaded"]] == ["student"] and ready["failed"] == []
        body = json.dumps({"user_id": "1", "k": 3}).encode()
        req = urllib.request.Request(server.url("/v1/recommend"), data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert len(json.load(r)["items"]) == 3
        # the HEALTHCHECK command, as the image runs it (python from PATH, the copied probe)
        hc = subprocess.run([str(python), str(HEALTHCHECK)], env=env, cwd=workdir, capture_output=True, text=True, timeout=10)
        assert hc.returncode == 0, hc.stderr
        maps = Path(f"/proc/{server.proc.pid}/maps")
        if maps.exists():
            text = maps.read_text()
            assert "libtorch" not in text
            assert f"{venv}/lib" in text and "onnxruntime" in text, "the server must run on the virtualenv's packages"
    finally:
        server.stop()
        _read_only(models, False)

    # no bundle: the process is up (/healthz) but not ready, and the healthcheck says so
    empty = tmp_path / "empty-models"
    empty.mkdir()
    port = _free_port()
    env = _image_env(runtime, venv, empty, port)
    server = Server(argv, env, workdir, port)
    try:
        server.wait("/healthz", {200})
        assert _get(server.url("/readyz"))[0] == 503
        hc = subprocess.run([str(python), str(HEALTHCHECK)], env=env, cwd=workdir, capture_output=True, text=True, timeout=10)
        assert hc.returncode == 1 and "503" in hc.stderr
    finally:
        server.stop()
