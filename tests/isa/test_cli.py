"""`fp8sim asm`, `disasm` and `compile` from the command line: files, refusals, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from simulator.cli import main

SRC = "start: setr r1, 0x40\n  loop 2, done\n  nop sg=1\n  nop wt=1\ndone: halt ; end\n"


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_asm_disasm_round_trip(tmp_path: Path):
    src, out = tmp_path / "p.s", tmp_path / "p.bin"
    src.write_text(SRC)
    r = run("asm", str(src), "-o", str(out))
    assert r.exit_code == 0, r.output
    data = out.read_bytes()
    assert len(data) == 5 * 16
    r = run("disasm", str(out))
    assert r.exit_code == 0 and "loop 2, L4" in r.output and "halt" in r.output
    again = tmp_path / "again.s"
    again.write_text(r.output)
    assert run("asm", str(again), "-o", str(tmp_path / "again.bin")).exit_code == 0
    assert (tmp_path / "again.bin").read_bytes() == data


def test_asm_refuses_to_overwrite_without_force(tmp_path: Path):
    src, out = tmp_path / "p.s", tmp_path / "p.bin"
    src.write_text(SRC)
    out.write_bytes(b"keep")
    r = run("asm", str(src), "-o", str(out))
    assert r.exit_code != 0 and "exists; use --force" in r.output
    assert out.read_bytes() == b"keep"
    assert run("asm", str(src), "-o", str(out), "--force").exit_code == 0
    assert out.read_bytes() != b"keep"


def test_bad_inputs_get_one_clear_line(tmp_path: Path):
    bad = tmp_path / "bad.s"
    bad.write_text("nop\n  setr r1, nowhere\n")
    r = run("asm", str(bad), "-o", str(tmp_path / "x.bin"))
    assert r.exit_code == 1
    assert f"{bad}:2:12: setr: imm: expected an integer" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "x.bin").exists()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(16) + b"\xee" + bytes(15))
    r = run("disasm", str(junk))
    assert r.exit_code == 1 and "byte offset 16 (0x10): unknown opcode 0xee" in r.output


def test_compile_writes_program_files(tmp_path: Path):
    prefix = tmp_path / "vgg"
    r = run("compile", "--model", "vgg7", "--batch", "4", "-o", str(prefix))
    assert r.exit_code == 0, r.output
    binary = Path(f"{prefix}.bin").read_bytes()
    memmap = json.loads(Path(f"{prefix}.memmap.json").read_text())
    notes = json.loads(Path(f"{prefix}.annotations.json").read_text())
    assert len(binary) == 16 * notes["summary"]["instructions"]
    assert len(notes["instructions"]) == notes["summary"]["instructions"]
    assert {r["name"] for r in memmap["regions"]} >= {"act:x", "target", "w:features.conv1"}
    # the annotated text assembles to the binary
    r = run("asm", f"{prefix}.s", "-o", str(tmp_path / "re.bin"))
    assert r.exit_code == 0 and (tmp_path / "re.bin").read_bytes() == binary
    r = run("compile", "--model", "vgg7", "--batch", "4", "-o", str(prefix))
    assert r.exit_code == 1 and "use --force" in r.output
    assert memmap["records"] and memmap["records_stored"] is False
    # --records: the verification program, which also stores the rounding records
    r = run("compile", "--model", "vgg7", "--batch", "4", "--records", "-o", str(tmp_path / "v"))
    assert r.exit_code == 0, r.output
    assert json.loads(Path(f"{tmp_path / 'v'}.memmap.json").read_text())["records_stored"]
    assert len(Path(f"{tmp_path / 'v'}.bin").read_bytes()) > len(binary)


def test_compile_from_a_graph_file_and_bad_options(tmp_path: Path):
    from workloads.graph import graph_for

    trace = tmp_path / "g.json"
    trace.write_text(json.dumps({"graph": graph_for("vgg7").to_dict()}))
    r = run("compile", "--trace", str(trace), "--batch", "2", "-o", str(tmp_path / "t"))
    assert r.exit_code == 0, r.output
    assert run("compile", "-o", str(tmp_path / "u")).exit_code == 2  # neither --model nor --trace
    r = run("compile", "--model", "vgg99", "-o", str(tmp_path / "u"))
    assert r.exit_code == 2 and "unknown model 'vgg99'" in r.output
    bad_cfg = tmp_path / "hw.yaml"
    bad_cfg.write_text("extends: ref28\ntensor_core: {lanes: -1}\n")
    r = run("compile", "--model", "vgg7", "--config", str(bad_cfg), "-o", str(tmp_path / "u"))
    assert r.exit_code == 1 and "tensor_core.lanes" in r.output and "Traceback" not in r.output
    broken = tmp_path / "broken.json"
    broken.write_text('{"model_name": "x"}')
    r = run("compile", "--trace", str(broken), "-o", str(tmp_path / "u"))
    assert r.exit_code == 1 and "malformed layer graph" in r.output


def test_compile_takes_a_shipped_trace_file_and_its_batch(tmp_path):
    from workloads.trace.format import load_trace

    trace = Path(__file__).resolve().parents[2] / "workloads/traces/resnet20_digits.npz"
    res = CliRunner().invoke(main, ["compile", "--trace", str(trace), "-o", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert f"batch {load_trace(trace).batch}," in res.output
    assert (tmp_path / "p.bin").stat().st_size > 0
    broken = tmp_path / "broken.npz"
    broken.write_bytes(trace.read_bytes()[:3000])
    res = CliRunner().invoke(main, ["compile", "--trace", str(broken), "-o", str(tmp_path / "q")])
    assert res.exit_code == 1 and "broken.npz" in res.output and "Traceback" not in res.output
