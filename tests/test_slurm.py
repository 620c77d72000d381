"""`snakemake --profile slurm` on a real SLURM cluster, and the profiles' resource settings.

The profile checks run everywhere (fast). The cluster tests are opt-in (CI=true or
GPVAE_SLURM_TEST=1) and need root and apt-get: they install Debian's SLURM, start a
single-node cluster with accounting and a fake GPU (tests/slurm/start.sh), run the tiny demo
through the unchanged profile from the repository root, compare its outputs with a local run,
cancel a training job mid-way with scancel and check that the rerun resumes it from its
checkpoint, and stop the daemons they started by PID (tests/slurm/stop.sh).
"""

from __future__ import annotations

import copy
import csv
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "slurm"
SLURM_PROFILE = ROOT / "slurm" / "config.yaml"
LOCAL_PROFILE = ROOT / "profiles" / "local" / "config.yaml"
SLURM_ONLY_KEYS = {"slurm_partition", "slurm_account"}
#: A tiny model whose training takes a few seconds, and one long enough to be cancelled.
QUICK_MODEL = {"type": "gpvae", "prior": "markov", "sensors": ["S2", "S1_ASC"], "latent_dim": 4,
               "hidden": 16, "train": {"epochs": 3, "batch_size": 64}}
#: Epochs of the model whose training job is cancelled after its first checkpoint.
LONG_EPOCHS = 6
#: Bounds of the waits (generous: a loaded CI machine is slow, never wrong): a whole run, and
#: a stop (Snakemake exiting after Ctrl-C, SLURM reaching a state or emptying its queue).
RUN_LIMIT_S = 1800
STOP_LIMIT_S = 600


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _rule_blocks() -> dict[str, str]:
    """Rule name -> the text of its definition, from the Snakefile and workflow/rules."""
    text = "\n".join(p.read_text() for p in [ROOT / "Snakefile",
                                            *sorted((ROOT / "workflow" / "rules").glob("*.smk"))])
    parts = re.split(r"^\s*rule (\w+):", text, flags=re.M)
    return {name: body for name, body in zip(parts[1::2], parts[2::2], strict=True)
            if name != "all"}


def _workflow_rules() -> set[str]:
    return set(_rule_blocks())


def _workflow_gpu_rules() -> set[str]:
    """Rules declaring a GPU resource (`gpu=1`) in the workflow itself."""
    return {name for name, body in _rule_blocks().items()
            if re.search(r"^\s*gpu\s*=", body, flags=re.M)}


# --------------------------------------------------------------------------- profile checks


def test_slurm_profile_uses_the_slurm_executor_with_retries() -> None:
    prof = _load(SLURM_PROFILE)
    assert prof["executor"] == "slurm"
    assert prof["jobs"] >= 10 and prof["retries"] >= 1 and prof["latency-wait"] >= 10
    for key in ("mem_mb", "runtime"):
        assert prof["default-resources"][key] > 0


def test_partition_and_account_are_set_in_one_block() -> None:
    text = SLURM_PROFILE.read_text()
    lines = text.splitlines()
    start = next(i for i, s in enumerate(lines) if "YOUR CLUSTER" in s)
    end = next(i for i, s in enumerate(lines) if i > start and s.startswith("# ====="))
    outside = [s for i, s in enumerate(lines) if not start <= i <= end]
    assert not [s for s in outside if "slurm_partition" in s or "slurm_account" in s]
    prof = _load(SLURM_PROFILE)
    # ...yet every job gets them (YAML merge keys), so an edit there reaches every rule.
    for res in [prof["default-resources"], *prof["set-resources"].values()]:
        assert SLURM_ONLY_KEYS <= set(res)


def test_profiles_name_only_rules_of_the_workflow() -> None:
    rules = _workflow_rules()
    assert {"scene", "extract", "mask", "sample", "train"} <= rules
    for path in (SLURM_PROFILE, LOCAL_PROFILE):
        prof = _load(path)
        for key in ("set-resources", "set-threads"):
            stale = set(prof[key]) - rules
            assert not stale, f"{path.relative_to(ROOT)}: {key} names unknown rules {stale}"
        assert {"scene", "extract", "mask", "sample"} <= set(prof["set-resources"])


def test_every_gpu_rule_of_the_workflow_gets_a_gpu_in_the_profile() -> None:
    res = _load(SLURM_PROFILE)["set-resources"]
    profile_gpu_rules = {rule for rule, values in res.items() if values.get("gpu")}
    assert profile_gpu_rules == _workflow_gpu_rules() >= {"train"}


def test_gpu_rules_request_one_gpu_and_cpus_per_gpu() -> None:
    res = _load(SLURM_PROFILE)["set-resources"]
    for rule in _workflow_gpu_rules():
        assert res[rule]["gpu"] == 1
        assert isinstance(res[rule]["cpus_per_gpu"], int) and res[rule]["cpus_per_gpu"] >= 1
        assert res[rule]["mem_mb"] >= 1000
        # The plugin lets cpus_per_task override cpus_per_gpu: it must not be set for GPU jobs.
        assert "cpus_per_task" not in res[rule]
    assert "cpus_per_task" not in _load(SLURM_PROFILE)["default-resources"]


def test_data_rules_request_no_gpu() -> None:
    res = _load(SLURM_PROFILE)["set-resources"]
    for rule, values in res.items():
        if rule not in _workflow_gpu_rules():
            assert "gpu" not in values and "gres" not in values, rule


def test_local_profile_has_the_same_resource_semantics() -> None:
    slurm, local = _load(SLURM_PROFILE), _load(LOCAL_PROFILE)

    def strip(res: dict) -> dict:
        return {k: v for k, v in res.items() if k not in SLURM_ONLY_KEYS}

    assert "executor" not in local
    assert strip(slurm["default-resources"]) == strip(local["default-resources"])
    assert slurm["set-threads"] == local["set-threads"]
    assert {r: strip(v) for r, v in slurm["set-resources"].items()} == local["set-resources"]
    assert any(str(r).replace(" ", "").startswith("gpu=") for r in local["resources"])


def _tiny_workdir(path: Path, models: dict) -> Path:
    (path / "config").mkdir(parents=True)
    cfg = _load(ROOT / "tests" / "data" / "tiny.yaml")
    cfg["models"] = copy.deepcopy(models)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # The jobs call `python -m gpvae.cli`: the Python running the tests must come first.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, **(extra or {})}


def _snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
            *args]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("snakemake_executor_plugin_slurm") is None,
                    reason="snakemake-executor-plugin-slurm is not installed "
                           "(pip install -e '.[slurm]')")
def test_slurm_dry_run_has_one_job_per_tile_and_sensor_and_per_model(tmp_path: Path) -> None:
    work = _tiny_workdir(tmp_path / "w", {"m1": QUICK_MODEL, "m2": QUICK_MODEL})
    # The literal command of the docs, from the repository root.
    proc = subprocess.run(_snakemake_cmd(work, "--profile", "slurm", "-n"), cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=_env())
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Using profile slurm" in out
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], flags=re.M))
    tiles = _load(ROOT / "tests" / "data" / "tiny.yaml")["tiles"]
    assert int(counts["extract"]) == int(counts["mask"]) == 3 * len(tiles)
    assert int(counts["scene"]) == len(tiles)
    assert int(counts["train"]) == 2


# --------------------------------------------------------------------------- real SLURM


def _cluster_skip_reason() -> str | None:
    if not (os.environ.get("CI") or os.environ.get("GPVAE_SLURM_TEST") == "1"):
        return ("real-SLURM test is opt-in: set GPVAE_SLURM_TEST=1 (CI sets CI=true); it "
                "installs Debian's slurm-wlm, munge and mariadb and starts daemons as root")
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "real-SLURM test needs root (it installs packages and starts slurmctld/slurmd)"
    if shutil.which("apt-get") is None:
        return "real-SLURM test needs apt-get (Debian/Ubuntu) to install slurm-wlm"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "real-SLURM test needs snakemake-executor-plugin-slurm (pip install -e '.[slurm]')"
    return None


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running single-node SLURM cluster; yields the environment its clients need."""
    reason = _cluster_skip_reason()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm-state")
    _run(["bash", str(SCRIPTS / "install.sh")], timeout=900)
    try:
        _run(["bash", str(SCRIPTS / "start.sh"), str(state)], timeout=300)
        env = _env()
        env.pop("SLURM_CONF", None)  # the cluster's configuration is in /etc/slurm
        yield env
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh"), str(state)], timeout=120)


@dataclass
class SlurmRun:
    local: Path
    slurm: Path
    returncode: int
    output: str
    seconds: float
    planned: dict[str, int]
    cancelled_job: str | None = None
    jobs: list[dict[str, str]] = field(default_factory=list)
    first_returncode: int | None = None


def _squeue_job(env: dict[str, str], comment: str) -> str | None:
    out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], env=env,
                         capture_output=True, text=True).stdout
    ids = [line.split("|")[0] for line in out.splitlines() if line.split("|")[-1] == comment]
    return ids[0] if ids else None


def _sacct(env: dict[str, str], since: str) -> list[dict[str, str]]:
    fmt = "JobID,Comment,State,ExitCode,Partition,Account,AllocTRES"
    out = _run(["sacct", "-n", "-P", "-X", "-S", since, "-o", fmt], env=env).stdout
    keys = fmt.split(",")
    return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines() if line]


def _rule_of(comment: str) -> str:
    """`rule_<rule>[_wildcards_<values>]` (the plugin's job comment) -> rule."""
    return comment.removeprefix("rule_").split("_wildcards_")[0]


def _targets() -> list[str]:
    """What the runs build: every data stage, both models' training (GPU rule `train`) and
    m1's embeddings (GPU rule `embed`), to stay within minutes on a 2-core machine;
    GPVAE_SLURM_FULL=1 builds the whole default target (every stage) instead."""
    if os.environ.get("GPVAE_SLURM_FULL") == "1":
        return []
    return ["results/models/m1/best.pt", "results/models/m2/best.pt",
            "results/embeddings/m1.nc"]


def _test_config(models: dict) -> dict:
    cfg = _load(ROOT / "tests" / "data" / "tiny.yaml")
    cfg["models"] = copy.deepcopy(models)
    # Fewer downstream/gap-filling/map jobs when the whole pipeline runs.
    cfg["predict"] = {"models": ["m1"]}
    cfg["downstream"] = {"classifiers": ["logreg"], "seeds": [0], "protocols": ["parcel"]}
    cfg["gapfill"] = {"baselines": ["linear"]}
    return cfg


@pytest.fixture(scope="module")
def slurm_run(cluster: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> SlurmRun:
    """The tiny demo through `snakemake --profile slurm` from the repository root, and the same
    config locally (`--profile profiles/local`) alongside; the m2 training job is cancelled
    with scancel once it has written its first checkpoint."""
    base = tmp_path_factory.mktemp("runs")
    long_model = {**copy.deepcopy(QUICK_MODEL), "sensors": ["S2"], "hidden": 8}
    long_model["train"].update(epochs=LONG_EPOCHS, patience=LONG_EPOCHS)
    cfg = _test_config({"m1": QUICK_MODEL, "m2": long_model})
    local, slurm = base / "local", base / "slurm"
    for work in (local, slurm):
        (work / "config").mkdir(parents=True)
        (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    plan = _run(_snakemake_cmd(slurm, "--cores", "1", "-n", *_targets()), cwd=ROOT, env=_env())
    planned = {r: int(n) for r, n in re.findall(r"^(\w+)\s+(\d+)$",
                                                 plan.stdout.split("Job stats:")[1], flags=re.M)
               if r not in ("all", "total")}
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    start = time.monotonic()
    local_log = open(base / "local-snakemake.log", "w")  # noqa: SIM115 (closed below)
    local_proc = subprocess.Popen(_snakemake_cmd(local, "--profile", "profiles/local",
                                                 *_targets()),
                                  cwd=ROOT, env=_env(), stdout=local_log,
                                  stderr=subprocess.STDOUT)
    cmd = _snakemake_cmd(slurm, "--profile", "slurm", *_targets())
    log_path = base / "slurm-snakemake.log"
    # Training state lives in results/models/<model>/state/<run id>/ (not an output).
    state = slurm / "results" / "models" / "m2" / "state"
    cancelled = None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=cluster, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + RUN_LIMIT_S
        while proc.poll() is None and time.monotonic() < deadline and cancelled is None:
            if any(state.glob("*/checkpoint.pt")):
                cancelled = _squeue_job(cluster, "rule_train_wildcards_m2")
                if cancelled:
                    _run(["scancel", cancelled], env=cluster)
            time.sleep(0.5)
        if cancelled and proc.poll() is None:
            # The plugin (2.8) never sees a job cancelled by scancel ("CANCELLED by <uid>")
            # and would wait forever: stop Snakemake as a user would (Ctrl-C; it cancels its
            # other jobs), then run the same command again.
            _wait_for_state(cluster, cancelled, "CANCELLED")
            _stop_snakemake(proc, cluster, slurm)
        elif proc.poll() is None:
            _stop_snakemake(proc, cluster, slurm)  # the m2 job was never seen: give up
        first = proc.wait()
        log.write(f"\n==== rerun after scancel of job {cancelled} ====\n")
        log.flush()
        proc = subprocess.run(cmd, cwd=ROOT, env=cluster, stdout=log, stderr=subprocess.STDOUT,
                              timeout=RUN_LIMIT_S)
    try:
        local_proc.wait(timeout=RUN_LIMIT_S)
    finally:
        local_log.close()
    local_out = (base / "local-snakemake.log").read_text()
    assert local_proc.returncode == 0, local_out[-4000:]
    return SlurmRun(local=local, slurm=slurm, returncode=proc.returncode,
                    output=log_path.read_text(), seconds=time.monotonic() - start,
                    planned=planned, cancelled_job=cancelled, jobs=_sacct(cluster, since),
                    first_returncode=first)


def _wait_until(condition, limit_s: float, what: str, every_s: float = 1.0) -> None:
    """Poll ``condition()`` until true; a generous bound, so a loaded machine only waits."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {limit_s:.0f} s waiting for {what}")


def _queue_empty(env: dict[str, str]) -> bool:
    out = subprocess.run(["squeue", "-h", "-u", _user(), "-o", "%i"], env=env,
                         capture_output=True, text=True)
    return out.returncode == 0 and not out.stdout.strip()


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _stop_snakemake(proc: subprocess.Popen, env: dict[str, str], workdir: Path) -> None:
    """Stop a Snakemake run deterministically before it is run again: Ctrl-C (it cancels its
    jobs) and a generous wait; SIGTERM, then SIGKILL if it hangs; then cancel whatever it
    left in the queue, wait until the queue is empty, and remove its lock (a killed Snakemake
    leaves the working directory locked)."""
    proc.send_signal(signal.SIGINT)
    for sig, limit in ((None, STOP_LIMIT_S), (signal.SIGTERM, 60), (signal.SIGKILL, 60)):
        if sig is not None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=limit)
            break
        except subprocess.TimeoutExpired:
            continue
    subprocess.run(["scancel", "-u", _user()], env=env, capture_output=True)
    _wait_until(lambda: _queue_empty(env), STOP_LIMIT_S, "the SLURM queue to empty")
    _run(_snakemake_cmd(workdir, "--unlock"), cwd=ROOT, env=env)


def _wait_for_state(env: dict[str, str], job: str, prefix: str) -> None:
    def reached() -> bool:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job, "-o", "State"], env=env,
                             capture_output=True, text=True).stdout
        return out.strip().startswith(prefix)

    _wait_until(reached, STOP_LIMIT_S, f"SLURM job {job} to reach state {prefix}")


@pytest.mark.slow
def test_the_slurm_run_succeeds(slurm_run: SlurmRun) -> None:
    print(f"\nSLURM run (with the local run alongside) took {slurm_run.seconds:.0f} s")
    assert slurm_run.returncode == 0, slurm_run.output[-5000:]
    assert "Using profile slurm" in slurm_run.output


@pytest.mark.slow
def test_every_job_ran_as_a_slurm_job(slurm_run: SlurmRun) -> None:
    completed = [j for j in slurm_run.jobs if j["State"] == "COMPLETED"]
    ran: dict[str, int] = {}
    for comment in {j["Comment"] for j in completed}:
        ran[_rule_of(comment)] = ran.get(_rule_of(comment), 0) + 1
    assert ran == slurm_run.planned  # every planned job completed as a SLURM job
    cfg = _load(slurm_run.slurm / "config" / "config.yaml")
    comments = {j["Comment"] for j in completed}
    sensors = ["S2"] + [f"S1_{o}" for o in cfg["inputs"]["S1"]["orbits"]]
    for tile in cfg["tiles"]:  # one job per tile, and per tile and sensor
        assert f"rule_scene_wildcards_{tile}" in comments
        for sensor in sensors:
            assert f"rule_extract_wildcards_{tile}_{sensor}" in comments
            assert f"rule_mask_wildcards_{tile}_{sensor}" in comments
    for model in cfg["models"]:  # one training job per model
        assert f"rule_train_wildcards_{model}" in comments
    for job in completed:
        comment = job["Comment"]
        wildcards = comment.split("_wildcards_")[1] if "_wildcards_" in comment else ""
        assert job["Account"], f"{comment}: no account in sacct"
        logs = slurm_run.slurm / ".snakemake" / "slurm_logs" / f"rule_{_rule_of(comment)}"
        assert (logs / wildcards / f"{job['JobID']}.log").is_file(), f"no job log: {comment}"


@pytest.mark.slow
def test_gpu_jobs_got_a_gpu_and_data_jobs_did_not(slurm_run: SlurmRun) -> None:
    gpu_rules = _workflow_gpu_rules()
    # A job cancelled while still pending (Ctrl-C after the scancel) was never allocated
    # anything: only jobs that got resources say what they got.
    allocated = [j for j in slurm_run.jobs if j["AllocTRES"]]
    assert {"train", "embed"} <= {_rule_of(j["Comment"]) for j in allocated}
    for job in allocated:
        has_gpu = "gres/gpu=1" in job["AllocTRES"]
        assert has_gpu == (_rule_of(job["Comment"]) in gpu_rules), job


def _same_netcdf(a_path: Path, b_path: Path) -> None:
    import xarray as xr

    with xr.open_dataset(a_path) as a, xr.open_dataset(b_path) as b:
        assert a.equals(b), f"{a_path.name} differs between the local and the SLURM run"


def _same_csv(a_path: Path, b_path: Path) -> None:
    import numpy as np

    with open(a_path) as fa, open(b_path) as fb:
        rows_a, rows_b = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    assert len(rows_a) == len(rows_b) > 0, a_path
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra.keys() == rb.keys(), a_path
        for key in set(ra) - {"seconds"}:  # timings differ, everything else must not
            try:
                assert np.isclose(float(ra[key]), float(rb[key]), rtol=1e-6), (a_path, key)
            except ValueError:
                assert ra[key] == rb[key], (a_path, key)


def _same_weights(a_path: Path, b_path: Path) -> None:
    import torch

    sa = torch.load(a_path, weights_only=True)["model_state"]
    sb = torch.load(b_path, weights_only=True)["model_state"]
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_slurm_outputs_equal_the_local_run(slurm_run: SlurmRun) -> None:
    def outputs(root: Path) -> set[Path]:
        return {p.relative_to(root) for p in (root / "results").rglob("*")
                if p.is_file() and "state" not in p.relative_to(root).parts
                and "logs" not in p.relative_to(root).parts}

    files = outputs(slurm_run.local)
    assert files == outputs(slurm_run.slurm)
    assert len([f for f in files if f.suffix == ".nc"]) >= 14  # cubes, masks, pixels, embed
    for rel in sorted(files):
        a, b = slurm_run.local / rel, slurm_run.slurm / rel
        if rel.suffix == ".nc":
            _same_netcdf(a, b)
        elif rel.suffix == ".csv":
            _same_csv(a, b)
        elif rel.suffix == ".pt":
            _same_weights(a, b)


@pytest.mark.slow
def test_cancelled_training_is_resumed_from_its_checkpoint(slurm_run: SlurmRun) -> None:
    assert slurm_run.cancelled_job, "the m2 training job was never seen running"
    m2 = [j for j in slurm_run.jobs if j["Comment"] == "rule_train_wildcards_m2"]
    states = {j["JobID"]: j["State"] for j in m2}
    assert states[slurm_run.cancelled_job].startswith("CANCELLED")
    assert "COMPLETED" in states.values()
    log = (slurm_run.slurm / "results" / "logs" / "train" / "m2.log").read_text()
    assert re.search(r"resuming m2 from .*checkpoint\.pt \((step|epoch) [1-9]", log), log[-2000:]
    with open(slurm_run.slurm / "results" / "models" / "m2" / "metrics.csv") as f:
        epochs = sorted({int(r["epoch"]) for r in csv.DictReader(f)})
    assert epochs == list(range(1, LONG_EPOCHS + 1))
    # ...and the resumed training equals the uninterrupted local one (checked file by file in
    # test_slurm_outputs_equal_the_local_run, m2 included).
