"""The `r1v` command as a user meets it: --help everywhere, end-to-end runs, and one clear
line with exit status 2 (never a traceback) for every bad input."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from r1v.cli import build_parser, main

SUBCOMMANDS = ["chat", "convert", "build", "demo"]


def run(*args, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "r1v", *args], capture_output=True, text=True, env=env,
                          timeout=300, **kw)


@pytest.mark.parametrize("sub", [None, *SUBCOMMANDS])
def test_help(sub, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([sub, "--help"] if sub else ["--help"])
    assert e.value.code == 0
    assert "usage: r1v" in capsys.readouterr().out


def test_build_convert_chat_through_the_real_entry_point(tmp_path, images):
    sky = tmp_path / "sky"
    r = run("build", "--preset", "tiny", "--out", str(sky), "--layout", "skywork")
    assert r.returncode == 0, r.stderr
    r = run("convert", str(sky), str(tmp_path / "hf"), "--to", "hf", "--dtype", "bf16")
    assert r.returncode == 0, r.stderr
    r = run("chat", "--model", str(tmp_path / "hf"), "--image", str(images[0]), "--image", str(images[1]),
            "--max-new-tokens", "5", "--temperature", "0", "--max-tiles", "2", "Compare them.")
    assert r.returncode == 0, r.stderr
    assert "[thinking]" in r.stdout and "Traceback" not in r.stderr


def test_interactive_multi_turn(tmp_path, images):
    model = tmp_path / "m"
    assert main(["build", "--out", str(model)]) == 0
    script = f"/image {images[0]}\nWhat is it?\n/image /no/such.png\nAnd again?\n/reset\n/quit\n"
    # seeded: sampled unseeded, a turn now and then wrote no reasoning token (CI at 21a2e2d: one [thinking])
    r = run("chat", "--model", str(model), "--max-new-tokens", "3", "--max-tiles", "1", "--seed", "0", input=script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("[thinking]") == 2
    assert "error: image not found" in r.stdout and "(new conversation)" in r.stdout


def test_interactive_commands_and_ctrl_c_stops_only_the_answer(monkeypatch, capsys, tiny):
    from r1v import cli
    from r1v.chat import Chat, TerminalPrinter

    chat = Chat(*tiny, max_tiles=1)
    lines = iter(["/help", "/imagine x", "Tell me.", "And now?", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    asked = []

    def ask(self, question, **kw):
        asked.append(question)
        if question == "Tell me.":
            raise KeyboardInterrupt  # Ctrl-C while the model answers
        return chat.ask(question, max_new_tokens=2, temperature=0)

    monkeypatch.setattr("r1v.chat.Conversation.ask", ask)
    assert cli._interactive(chat, [], TerminalPrinter(), {}) == 0
    out = capsys.readouterr().out
    assert "/image PATH" in out and "unknown command /imagine" in out and "[stopped]" in out
    assert asked == ["Tell me.", "And now?"]  # the session went on after Ctrl-C; /imagine never reached the model


@pytest.mark.parametrize("stopped,expect", [(False, "cut off at the limit of 7 tokens"),
                                            (True, "ended its turn without closing its reasoning")])
def test_no_answer_says_why(stopped, expect):
    import io

    from r1v.chat import Reply, TerminalPrinter

    out = io.StringIO()
    TerminalPrinter(out=out).finish(Reply("abc", "abc", None, 7, stopped))
    assert expect in out.getvalue()


@pytest.mark.parametrize("flag,value,msg", [("--temperature", "nan", "finite"), ("--temperature", "-1", "greedy"),
                                            ("--top-p", "2", "(0, 1]"), ("--top-p", "0", "(0, 1]"),
                                            ("--repetition-penalty", "0", "positive"),
                                            ("--max-new-tokens", "0", "at least 1")])
def test_sampling_settings_are_checked_before_the_model_loads(flag, value, msg, tmp_path, capsys):
    assert main(["chat", "--model", str(tmp_path / "never-loaded"), flag, value, "Q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and msg in err, err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("r1v ")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "model"
    assert main(["build", "--out", str(d), "--layout", "skywork"]) == 0
    return d


def bad_inputs(model_dir, images, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(images[0].read_bytes()[:500])
    notimg = tmp_path / "notes.png"
    notimg.write_text("not a picture")
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 10)
    m, img = str(model_dir), str(images[0])
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    notes = tmp_path / "notes"
    notes.mkdir(exist_ok=True)
    (notes / "todo.txt").write_text("keep me too")
    return {
        "build onto a file": (["build", "--out", str(afile), "--overwrite"], "is a file"),
        "convert onto a file": (["convert", m, str(afile), "--to", "hf", "--overwrite"], "is a file"),
        "overwrite a folder that is not a model": (["build", "--out", str(notes), "--overwrite"], "not a model"),
        "convert onto itself": (["convert", m, m, "--to", "hf", "--overwrite"], "the source itself"),
        "build under a file": (["build", "--out", str(afile / "model")], "a file is in the way"),
        "missing model": (["chat", "--model", str(tmp_path / "nope"), "Q"], "model directory not found"),
        "missing image": (["chat", "--model", m, "--image", str(tmp_path / "x.png"), "Q"], "image not found"),
        "corrupt image": (["chat", "--model", m, "--image", str(corrupt), "Q"], "corrupt or truncated"),
        "not an image": (["chat", "--model", m, "--image", str(notimg), "Q"], "not an image"),
        "placeholders": (["chat", "--model", m, "--image", img, "<image> vs <image>"], "placeholder"),
        "empty prompt": (["chat", "--model", m, "--image", img, " "], "empty"),
        "broken shard": (["chat", "--model", str(broken), "Q"], "corrupt or truncated"),
        "convert to existing": (["convert", m, m, "--to", "hf"], "exists"),
        "bad shard size": (["convert", m, str(tmp_path / "o"), "--to", "hf", "--max-shard-size", "lots"],
                           "size"),
    }


CASES = ["missing model", "missing image", "corrupt image", "not an image", "placeholders", "empty prompt",
         "broken shard", "convert to existing", "bad shard size", "build onto a file", "convert onto a file",
         "overwrite a folder that is not a model", "convert onto itself", "build under a file"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_clear_line(case, model_dir, images, tmp_path, capsys):
    args, msg = bad_inputs(model_dir, images, tmp_path)[case]
    assert main(args + (["--max-new-tokens", "2"] if args[0] == "chat" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("r1v: error:") and msg in err, err
    assert not list(tmp_path.glob("*.partial"))  # nothing half-written left behind
    assert (tmp_path / "afile").read_text() == "keep me" and (tmp_path / "notes" / "todo.txt").exists()


def test_bad_input_through_the_process_has_no_traceback(model_dir, tmp_path):
    r = run("chat", "--model", str(model_dir), "--image", str(tmp_path / "gone.png"), "Q")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.strip().startswith("r1v: error: image not found")


def test_demo_runs(tmp_path):
    r = run("demo", "--out", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stderr
    assert "bit-identical: True" in r.stdout and "[thinking]" in r.stdout
    diff = float(re.search(r"logit difference\| with image = (\S+)", r.stdout)[1])
    assert diff <= 1e-5


def test_hub_kernels_stay_off_unless_asked_for(monkeypatch):
    # transformers 5.2x swaps in the Hub's kernels when a model is loaded or trained on a GPU; offline
    # (r1v's HF_HUB_OFFLINE) that stopped every GPU stage on an H200, online it downloads code.
    from transformers.integrations import hub_kernels

    from r1v.cli import _quiet_transformers

    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    _quiet_transformers()
    assert os.environ["USE_HUB_KERNELS"] == "0" and not hub_kernels._kernels_enabled()
    monkeypatch.setenv("USE_HUB_KERNELS", "1")  # a user's choice stands
    _quiet_transformers()
    assert hub_kernels._kernels_enabled()


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`r1v ... | head`: the reader closes its end before r1v writes. r1v stops as a tool that SIGPIPE ends
    (status 141, nothing on stderr), not with the message for a path it cannot write, nor a traceback."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout block-buffered, as usual
    env["HF_HUB_OFFLINE"] = "1"
    p = subprocess.Popen([sys.executable, "-m", "r1v", "eval", "examples", "--out", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.close()  # before the interpreter has started: the listing meets a closed pipe
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 141, err
    assert err == ""


def test_a_broken_pipe_elsewhere_is_an_error(monkeypatch, capsys):
    """A BrokenPipeError that is not stdout's (a socket to an endpoint that went away) is not silenced."""
    import r1v.evaluate.cli as ev

    def broken(_):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(ev, "cmd_examples", broken)
    assert main(["eval", "examples", "--out", "x"]) == 2
    assert "Broken pipe" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_claims_runs_the_seeds_it_is_given():
    """`make claims SEEDS="3 5"` (a dry run): the recipe and AL-CoTD's comparison at each seed, then the claims
    table over seed 0 and those seeds, in that order; without SEEDS, seeds 1 and 2."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def dry(*args):
        out = subprocess.run(["make", "-n", "-C", root, "--no-print-directory", "claims", *args],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    lines = dry("SEEDS=3 5")
    claims = [x for x in lines if "recipe claims" in x]
    assert claims == [".venv/bin/r1v recipe claims runs/tiny runs/tiny-s3 runs/tiny-s5 --out runs/claims"]
    text = "\n".join(lines)
    # set -e: a failed seed stops the loop (and make)
    assert "set -e; for s in 3 5; do .venv/bin/r1v recipe run recipes/tiny.yaml seed=$s name=tiny-s$s;" in text
    cmp = ".venv/bin/r1v world compare --config recipes/tiny.yaml --fixed 1.0"  # the arm the claims table reads
    assert f"set -e; for s in 3 5; do {cmp} seed=$s name=tiny-s$s;" in text
    assert cmp in lines  # seed 0: make demo's run
    assert text.index("recipe run recipes/tiny.yaml seed=") < text.index("world compare") < text.index("recipe claims")
    assert [x for x in dry() if "recipe claims" in x] == [
        ".venv/bin/r1v recipe claims runs/tiny runs/tiny-s1 runs/tiny-s2 --out runs/claims"]
