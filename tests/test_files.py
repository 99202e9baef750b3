"""What archspec reads and writes, as a user runs it: specs from files or standard input, output
paths that are not regular files, exit statuses, sizes in messages (archspec.fileio's rules)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import archspec
from archspec.units import human_bytes, parse_bytes

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "specs" / "lenet5.yaml"
LENET_PARAMS = 61_706  # LeNet-5 as published; test_foundation_zoo derives it layer by layer


def cli(*args, stdin: bytes | None = None, cwd=None, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "archspec", *map(str, args)], input=stdin,
                          capture_output=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def text(result) -> tuple[str, str]:
    return result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace")


def assert_clean_failure(result, *needles: str) -> str:
    out, err = text(result)
    assert result.returncode == 1, (out, err)
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


# ---- reading specs -----------------------------------------------------------------------------

def test_check_reads_a_spec_from_standard_input_named_stdin():
    result = cli("check", "-", stdin=LENET.read_bytes())
    out, err = text(result)
    assert result.returncode == 0, err
    assert f"params: {LENET_PARAMS:,}" in out
    bad = b"name: x\ninput: [1, 28, 28]\nlayers:\n  - {type: MaxPool2D, kernel_size: 2}\n"
    assert_clean_failure(cli("check", "-", stdin=bad),
                         "<stdin>:4:12: error: unknown layer type 'MaxPool2D'")


def test_build_reads_standard_input_and_keeps_that_text_in_the_checkpoint(tmp_path):
    out = tmp_path / "lenet.pt"
    result = cli("build", "-", "-o", out, stdin=LENET.read_bytes())
    assert result.returncode == 0, text(result)
    import torch
    assert torch.load(out, weights_only=True)["spec"] == LENET.read_text()


def test_standard_input_has_the_same_size_limit_as_a_file():
    assert_clean_failure(cli("check", "-", "--max-bytes", 100, stdin=LENET.read_bytes()),
                         "<stdin>:1:1: error: spec is more than the limit of 100 bytes")


def test_a_path_without_a_yaml_suffix_is_still_a_path(tmp_path):
    (tmp_path / "lenet.txt").write_bytes(LENET.read_bytes())
    result = cli("check", "lenet.txt", cwd=tmp_path)
    assert result.returncode == 0 and f"params: {LENET_PARAMS:,}" in text(result)[0]
    assert_clean_failure(cli("check", "missing.txt", cwd=tmp_path),
                         "missing.txt: error: cannot read spec file 'missing.txt': no such file")


def test_api_load_takes_a_path_and_loads_takes_text(tmp_path, monkeypatch):
    (tmp_path / "lenet.txt").write_bytes(LENET.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert archspec.analyze(archspec.load("lenet.txt")).params == LENET_PARAMS
    assert archspec.analyze(archspec.loads(LENET.read_text())).params == LENET_PARAMS
    # a file named like the text exists: loads still reads the text, never the file
    (tmp_path / "net.yaml").write_bytes(LENET.read_bytes())
    with pytest.raises(archspec.SpecError, match="a spec must be a mapping"):
        archspec.loads("net.yaml")
    # multi-line text given to load() is not silently parsed: the message says what to use
    with pytest.raises(archspec.SpecError) as caught:
        archspec.load(LENET.read_text())
    assert caught.value.diagnostics[0].hint == "to read YAML text, use archspec.loads(text)"


def test_a_fifo_or_directory_as_spec_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    for command in (("check",), ("diagram", "-o", tmp_path / "x.svg"), ("verify",),
                    ("build", "-o", tmp_path / "x.pt")):
        assert_clean_failure(cli(*command[:1], fifo, *command[1:], timeout=60),
                             f"cannot read spec file '{fifo}': it is a FIFO (named pipe), "
                             "not a regular file")
    assert_clean_failure(cli("check", tmp_path),
                         f"cannot read spec file '{tmp_path}': it is a directory")



def test_a_socket_or_device_as_input_is_named_for_what_it_is(tmp_path):
    """A socket cannot even be opened (ENXIO): the message says it is a socket, like a FIFO's."""
    sock_path = tmp_path / "spec.sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(sock_path))
        for command in (("check",), ("verify", "--device", "meta"), ("sizes",)):
            assert_clean_failure(cli(*command[:1], sock_path, *command[1:], timeout=60),
                                 f"cannot read spec file '{sock_path}': it is a socket, not a "
                                 "regular file")
        assert_clean_failure(cli("verify", LENET, "--device", "meta", "--weights", sock_path),
                             "it is a socket")
        with pytest.raises(archspec.FileError, match="it is a socket"):
            archspec.load_checkpoint(sock_path)
    finally:
        server.close()
    null = private_device("/dev/null", tmp_path)
    assert_clean_failure(cli("check", null), "it is a character device, not a regular file")

# ---- exit statuses ------------------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_spec_is_a_file_error(tmp_path):
    spec = tmp_path / "secret.yaml"
    spec.write_bytes(LENET.read_bytes())
    spec.chmod(0)
    assert_clean_failure(cli("check", spec), "permission denied")


def test_exit_status_is_0_valid_1_spec_or_file_error_2_usage(tmp_path):
    assert cli("check", LENET).returncode == 0
    assert cli("check", tmp_path / "missing.yaml").returncode == 1
    assert cli("check", tmp_path).returncode == 1                   # a directory
    assert_clean_failure(cli("check", "x" * 5000), "cannot read spec file", "name too long")
    assert cli("diagram", tmp_path / "missing.yaml", "-o", tmp_path / "x.svg").returncode == 1
    assert cli("build", tmp_path / "missing.yaml", "-o", tmp_path / "x.pt").returncode == 1
    assert cli("verify", tmp_path / "missing.yaml").returncode == 1
    for usage in (("check", "--batch-size", 0, LENET), ("check", "--no-such-option", LENET),
                  ("build", LENET), ("check",), ("verify", LENET, "--max-memory", "lots")):
        result = cli(*usage)
        assert result.returncode == 2, (usage, text(result))
    out, _ = text(cli("--help"))
    assert "Exit status:" in out and "2   command-line usage" in out


# ---- writing outputs ----------------------------------------------------------------------------

def private_device(real: str, folder: Path) -> Path:
    """A node of the same device as `real` in our own folder, when we may make one (as root): a
    regression then replaces our copy, never the machine's /dev/null. Without that right we
    cannot change /dev either, so the real node is safe to use."""
    node = folder / Path(real).name
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.stat(real).st_rdev)
        return node
    except PermissionError:
        if os.access("/dev", os.W_OK):
            pytest.skip("cannot make a device node, and /dev is writable")
        return Path(real)


def assert_same_device(path: Path, before: os.stat_result) -> None:
    after = os.stat(path)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)  # not renamed over


def test_devices_directories_and_sockets_are_refused_and_left_alone(tmp_path):
    full = private_device("/dev/full", tmp_path)
    before = os.stat(full)
    assert_clean_failure(cli("build", LENET, "-o", full),
                         f"refusing to write to '{full}': it is a character device")
    assert_clean_failure(cli("diagram", LENET, "-o", full, "--format", "dot"),
                         f"refusing to write to '{full}'")
    assert_same_device(full, before)
    folder = tmp_path / "out.pt"
    folder.mkdir()
    assert_clean_failure(cli("build", LENET, "-o", folder), "it is a directory")
    assert folder.is_dir() and not list(folder.iterdir())
    sock_path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(sock_path))
        assert_clean_failure(cli("diagram", LENET, "-o", sock_path, "--format", "dot"),
                             "it is a socket")
        assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
    finally:
        server.close()
    assert not list(tmp_path.glob(".*tmp"))


def test_the_null_device_is_written_in_place_and_stays_a_device(tmp_path):
    null = private_device("/dev/null", tmp_path)
    before = os.stat(null)
    result = cli("build", LENET, "-o", null)
    assert result.returncode == 0, text(result)
    assert_same_device(null, before)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_standard_output_is_written_in_place_and_the_status_goes_to_stderr(tmp_path):
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")  # what /dev/stdout is, without touching /dev
    for output in ("-", link):
        result = cli("diagram", LENET, "-o", output, "--format", "dot")
        out, err = text(result)
        assert result.returncode == 0, err
        assert out.startswith("digraph lenet5 {") and "wrote" not in out
        assert "wrote" in err
    assert link.is_symlink()


def test_a_fifo_is_written_when_someone_reads_it_and_refused_otherwise(tmp_path):
    fifo = tmp_path / "picture.fifo"
    os.mkfifo(fifo)
    assert_clean_failure(cli("diagram", LENET, "-o", fifo, "--format", "dot", timeout=60),
                         "no process is reading from this FIFO")
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = cli("diagram", LENET, "-o", fifo, "--format", "dot", timeout=60)
    reader.join(timeout=60)
    assert result.returncode == 0, text(result)
    assert received and received[0].startswith(b"digraph lenet5 {")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_symlink_output_is_followed_the_link_stays(tmp_path):
    target = tmp_path / "real.pt"
    target.write_bytes(b"old")
    link = tmp_path / "model.pt"
    link.symlink_to(target)
    result = cli("build", LENET, "-o", link)
    assert result.returncode == 0, text(result)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert archspec.analyze(archspec.load(LENET)).params == sum(
        p.numel() for p in archspec.load_checkpoint(target).parameters())


# ---- sizes ------------------------------------------------------------------------------------

def test_sizes_are_printed_with_a_unit_that_shows_the_number(tmp_path):
    assert [human_bytes(n) for n in (0, 1, 1023, 1024, 1536, 5 * 2**20, 3 * 2**30 // 2)] == \
        ["0 B", "1 B", "1023 B", "1.00 KiB", "1.50 KiB", "5.00 MiB", "1.50 GiB"]
    assert [parse_bytes(t) for t in ("1", "1e9", "500MB", "2GiB", "1.5 KiB")] == \
        [1, 10**9, 500 * 10**6, 2 * 2**30, 1536]
    # LeNet-5's parameters and buffers in float32: 61,706 x 4 bytes = 246,824 B
    err = assert_clean_failure(cli("build", LENET, "-o", tmp_path / "x.pt", "--max-param-bytes", 1),
                               f"needs {246_824 / 1024:.2f} KiB for its 61,706 parameters")
    assert "more than the 1 B allowed" in err and "0.0 GiB" not in err


# ---- disk space, signals, stale temporary files ------------------------------------------------

def test_build_checks_the_free_disk_space_before_writing(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from archspec.cli import main
    out = tmp_path / "lenet.pt"
    free = 100_000  # less than LeNet-5's 61,706 x 4 = 246,824 bytes of float32 weights
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: real(path)._replace(free=free))
    result = CliRunner().invoke(main, ["build", str(LENET), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert f"not enough disk space for '{out}'" in result.stderr
    assert f"has {free / 1024:.2f} KiB free" in result.stderr
    assert not list(tmp_path.iterdir())                      # nothing left behind
    with pytest.raises(archspec.FileError, match="not enough disk space"):
        archspec.save_checkpoint(archspec.compile(archspec.load(LENET)), out)
    assert not list(tmp_path.iterdir())


def test_build_prints_the_size_it_wrote(tmp_path):
    out = tmp_path / "lenet.pt"
    result = cli("build", LENET, "-o", out)
    assert result.returncode == 0, text(result)
    assert f"wrote {out} ({out.stat().st_size / 1024:.2f} KiB)" in text(result)[0]


BIG = "name: big\ninput: [8192]\nlayers:\n  - {type: dense, out_features: 8192}\n"  # 256 MiB


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_build_stopped_by_a_signal_leaves_no_temporary_file(tmp_path, signum):
    spec, out = tmp_path / "big.yaml", tmp_path / "big.pt"
    spec.write_text(BIG)
    for _attempt in range(3):   # the signal must land while the file is being written
        proc = subprocess.Popen([sys.executable, "-m", "archspec", "build", str(spec), "-o",
                                 str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            temps = list(tmp_path.glob(".big.pt.archspec-*.tmp"))
            if temps and temps[0].exists() and temps[0].stat().st_size > 0:
                break
            time.sleep(0.002)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            break
        out.unlink()
    assert proc.returncode in (-signum, 1), err          # killed by it, or click's "Aborted!"
    assert b"Traceback" not in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["big.yaml"]


def test_temporary_files_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)
    hour_ago = time.time() - 3600
    stale = tmp_path / f".old.pt.archspec-{dead}-k3j2h1.tmp"
    just_written = tmp_path / f".old.pt.archspec-{dead}-a1b2c3.tmp"  # may be mid-rename elsewhere
    living = tmp_path / f".other.pt.archspec-{os.getpid()}-x9y8z7.tmp"
    unrelated = tmp_path / ".notes.tmp"
    for path in (stale, just_written, living, unrelated):
        path.write_bytes(b"partial")
    for path in (stale, living, unrelated):
        os.utime(path, (hour_ago, hour_ago))
    result = cli("diagram", LENET, "-o", tmp_path / "lenet.dot")
    assert result.returncode == 0, text(result)
    assert not stale.exists()
    assert just_written.exists() and living.exists() and unrelated.exists()


# ---- the memory guard -------------------------------------------------------------------------

# LeNet-5 per sample: the 1x32x32 input and every layer output (conv1, tanh1: 6x28x28; pool1:
# 6x14x14; conv2, tanh2: 16x10x10; pool2, flatten: 400; dense1, tanh3: 120; dense2, tanh4: 84;
# dense3: 10), in float32.
LENET_VALUES = 1024 + 2 * 4704 + 1176 + 2 * 1600 + 2 * 400 + 2 * 120 + 2 * 84 + 10
LENET_WEIGHT_BYTES = 61_706 * 4


def test_verify_refuses_a_run_that_would_not_fit_before_allocating():
    activations = LENET_VALUES * 2 * 4  # the default batch of 2
    err = assert_clean_failure(
        cli("verify", LENET, "--max-memory", "100KiB"),
        f"running the model on a batch of 2 needs "
        f"{(LENET_WEIGHT_BYTES + activations) / 1024:.2f} KiB "
        f"({LENET_WEIGHT_BYTES / 1024:.2f} KiB for its 61,706 parameters and buffers, "
        f"{activations / 1024:.2f} KiB for the input and every layer's output), "
        "more than the 100.00 KiB allowed")
    assert "--device meta" in err
    start = time.monotonic()
    err = assert_clean_failure(cli("verify", LENET, "--batch-size", 10**12),
                               "running the model on a batch of 1,000,000,000,000 needs")
    assert "of memory available" in err and "--device meta" in err
    assert time.monotonic() - start < 120
    result = cli("verify", LENET, "--batch-size", 10**12, "--device", "meta")
    assert result.returncode == 0, text(result)


def test_build_takes_the_same_memory_limit(tmp_path):
    assert_clean_failure(cli("build", LENET, "-o", tmp_path / "x.pt", "--max-memory", "1KiB"),
                         "more than the 1.00 KiB allowed")
    assert not list(tmp_path.iterdir())
