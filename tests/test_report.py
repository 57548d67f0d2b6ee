"""skipexp report: rebuild summaries and plots of finished, diverged, interrupted and crashed runs."""
import json
import os
import signal
import subprocess
import time

from conftest import cli, skipexp_cmd

from skipexp.rundir import runio


def _interrupted_run(tmp_path, config):
    """A real Ctrl-C: start a long run, wait for its first rows, send SIGINT once."""
    run_dir = tmp_path / "interrupted"
    proc = subprocess.Popen(skipexp_cmd() + ["train", str(config), "train.epochs=5000", "--run-dir", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "NO_COLOR": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and len(runio.read_csv(run_dir / "metrics.csv")) < 20:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    return run_dir


def test_report_rebuilds_every_kind_of_run(tmp_path, tiny_config):
    fin, div = tmp_path / "finished", tmp_path / "diverged"
    cli("train", tiny_config, "log.plots=false", "--run-dir", fin, check=0)   # report draws them
    cli("train", tiny_config, "log.plots=false", "train.lr=1000000000", "--run-dir", div, check=0)
    intr = _interrupted_run(tmp_path, tiny_config)
    # a crash: the process vanished while 'running', mid-row (a copy of the finished run, made to look killed)
    crash = tmp_path / "crashed"
    subprocess.run(["cp", "-r", str(fin), str(crash)], check=True)
    meta = json.loads((crash / "meta.json").read_text())
    meta.update(status="running", heartbeat={"host": runio.host(), "pid": 2 ** 22 + 12345, "time": 0})
    (crash / "meta.json").write_text(json.dumps(meta))
    with open(crash / "metrics.csv", "a") as f:
        f.write("99,0,2.3")
    for d in (fin, div, intr, crash):
        (d / "summary.json").unlink(missing_ok=True)
        for png in (d / "plots").glob("*.png"):
            png.unlink()

    p = cli("report", fin, div, intr, crash, check=0)
    statuses = {d.name: json.loads((d / "summary.json").read_text())["status"] for d in (fin, div, intr, crash)}
    assert statuses == {"finished": "completed", "diverged": "diverged", "interrupted": "interrupted",
                        "crashed": "crashed"}
    for d in (fin, div, intr, crash):
        assert {p.name for p in (d / "plots").glob("*.png")} == {"loss.png", "grad_norms.png", "grad_heatmap.png"}
        assert str(d) in p.stdout
    assert json.loads((div / "summary.json").read_text())["diverged_at_step"] >= 1
    for d in (fin, div, intr):  # the steps taken, as the process that trained the run recorded them
        s, meta = (json.loads((d / f).read_text()) for f in ("summary.json", "meta.json"))
        assert s["steps"] == meta["steps_done"] and s["steps_per_s"] == s["steps"] / meta["train_seconds"]
        if d is not div:  # a diverged run's last window holds only its non-finite loss: final is null
            assert s["best_train_loss"] <= s["final_train_loss"] and s["best_train_acc"] >= s["final_train_acc"]
    div_s = json.loads((div / "summary.json").read_text())
    assert div_s["steps"] < div_s["diverged_at_step"]  # the bad step's update was never applied
    assert json.loads((crash / "summary.json").read_text())["steps"] == 16  # the half-written row is dropped
    assert 16 < json.loads((intr / "summary.json").read_text())["steps"] < 5000 * 8
    assert "diverged at step" in p.stdout and "interrupted" in p.stdout


def test_report_refuses_other_folders(tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "a.txt").write_text("hello")
    p = cli("report", other, check=2)
    assert p.stderr.strip() == f"error: {other}: not a skipexp run, comparison or sweep folder " \
                               "(no meta.json, compare summary.json or sweep.yaml)"
    assert sorted(x.name for x in other.iterdir()) == ["a.txt"]
    p = cli("report", tmp_path / "missing", check=2)
    assert "no such folder" in p.stderr


def _completed_run(tmp_path, config):
    """TINY for 10 epochs (80 steps) with a row every step: a metrics.csv of about 5 kB."""
    run = tmp_path / "done"
    cli("train", config, "train.epochs=10", "log.every=1", "--run-dir", run, check=0)
    assert (run / "metrics.csv").stat().st_size > 4000
    return run


def test_report_of_a_cut_csv_leaves_the_summary_and_says_what_is_missing(tmp_path, tiny_config):
    run = _completed_run(tmp_path, tiny_config)
    summary = (run / "summary.json").read_bytes()
    with open(run / "metrics.csv", "r+b") as f:
        f.truncate(3000)
    rows = runio.read_csv(run / "metrics.csv")
    p = cli("report", run, check=2)
    assert p.stderr == (f"error: {run / 'metrics.csv'}: ends at step {int(rows[-1]['step'])}, but meta.json says "
                        f"the run completed after 80 steps: the rows from step {int(rows[-1]['step']) + 1} to "
                        "step 80 are missing; summary.json is left as it was\n"), p.stderr
    assert (run / "summary.json").read_bytes() == summary and p.stdout == ""


def test_report_refuses_every_kind_of_damaged_csv_naming_the_file(tmp_path, tiny_config):
    run = _completed_run(tmp_path, tiny_config)
    summary = (run / "summary.json").read_bytes()
    whole = {name: (run / name).read_text() for name in ("metrics.csv", "eval.csv", "grad_norms.csv")}

    def lines(name):
        return whole[name].splitlines(keepends=True)

    damage = [
        ("metrics.csv", "".join(lines("metrics.csv")[:5] + lines("metrics.csv")[6:]), "has no row for step 5"),
        ("metrics.csv", "".join(lines("metrics.csv")[:6] + lines("metrics.csv")[3:]),
         "step 3 comes after step 5: rows repeated or out of order"),
        ("metrics.csv", whole["metrics.csv"][:-5], "ends at step 79, but meta.json says the run completed after "
         "80 steps: the row of step 80 is missing"),   # its last line cut off
        ("eval.csv", "".join(lines("eval.csv")[:-1]), "the row of step 80 is missing"),
        ("grad_norms.csv", "".join(lines("grad_norms.csv")[:-1]), "the row of step 80 is missing"),
        ("metrics.csv", whole["metrics.csv"] + "81" + lines("metrics.csv")[-1][2:], "past the run's 80 steps"),
    ]
    for name, text, words in damage:
        (run / name).write_text(text)
        p = cli("report", run, check=2)
        assert p.stderr.startswith(f"error: {run / name}: ") and words in p.stderr, p.stderr
        assert p.stderr.count("\n") == 1 and p.stderr.endswith("; summary.json is left as it was\n")
        assert (run / "summary.json").read_bytes() == summary
        (run / name).write_text(whole[name])
    cli("report", run, check=0)
