"""Small helpers around the real fairseq command-line tools (fairseq's own tests/utils.py is not
installed with fairseq, so the plugin tests carry their own). Every tool runs as a subprocess of the
project venv's Python with the plugin as --user-dir, exactly as a user runs it."""
import os
import random
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PLUGIN = os.path.join(ROOT, "plugin", "decayfw_fairseq")
BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "bindings", "python"),
                                                    os.path.join(ROOT, "plugin"), os.environ.get("PYTHONPATH", "")]),
           OMP_NUM_THREADS="1")

# A tiny model both as a fairseq `transformer_lm` base and as the plugin's decay arch.
TINY = ["--decoder-layers", "2", "--decoder-embed-dim", "32", "--decoder-input-dim", "32",
        "--decoder-output-dim", "32", "--decoder-ffn-embed-dim", "64", "--decoder-attention-heads", "4",
        "--decoder-normalize-before", "--dropout", "0.0"]
TRAIN = ["--task", "language_modeling", "--optimizer", "adam", "--lr", "0.003", "--max-tokens", "512",
         "--tokens-per-sample", "64", "--no-progress-bar", "--cpu", "--num-workers", "0", "--log-interval", "5",
         "--no-epoch-checkpoints", "--seed", "1"]


def run(tool, args, check=True, stdin=None, timeout=600):
    exe = os.path.join(BIN, tool) if tool.startswith("fairseq-") else tool
    cmd = ([exe] if tool.startswith("fairseq-") else [sys.executable, "-m", tool]) + [str(a) for a in args]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, input=stdin, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return r


def make_dummy_data(directory, seed=0):
    """Letter 'words' with a little structure (bigrams repeat), so a few updates lower the loss."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    for split, n in (("train", 400), ("valid", 40), ("test", 40)):
        with open(os.path.join(directory, f"{split}.txt"), "w") as fh:
            for _ in range(n):
                words, w = [], rng.choice(letters)
                for _ in range(rng.randint(5, 30)):
                    w = letters[(letters.index(w) + rng.choice([1, 1, 2, 5])) % 26]
                    words.append(w)
                fh.write(" ".join(words) + "\n")


def preprocess(directory):
    run("fairseq-preprocess", ["--only-source", "--trainpref", f"{directory}/train.txt",
                               "--validpref", f"{directory}/valid.txt", "--testpref", f"{directory}/test.txt",
                               "--destdir", f"{directory}/data-bin", "--workers", "1"])
    return f"{directory}/data-bin"


def train_base(data, save_dir, updates=40, extra=()):
    return run("fairseq-train", [data, "--arch", "transformer_lm", *TINY, *TRAIN, "--max-update", updates,
                                 "--save-dir", save_dir, *extra])


def train_decay(data, save_dir, base=None, updates=40, extra=()):
    args = [data, "--user-dir", PLUGIN, "--arch", "decay_transformer_lm_tiny", *TINY, *TRAIN,
            "--max-update", updates, "--save-dir", save_dir, *extra]
    if base:
        args += ["--finetune-from-model", base]
    return run("fairseq-train", args)
