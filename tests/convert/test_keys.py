#!/usr/bin/python3
"""Key options of ckpt-convert: --strip-prefix, --rename, --dry-run (golden
mappings in golden/), collisions, and the output safety rules."""
import collections
import hashlib
import os
import sys

import torch

from common import HERE, check, convert, deep_equal, finish, load, rmtree, tmpdir, write_mammoth

GOLDEN = os.path.join(HERE, "golden")
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def golden(name, text):
    path = os.path.join(GOLDEN, name)
    if UPDATE:
        with open(path, "w") as f:
            f.write(text)
    try:
        with open(path) as f:
            want = f.read()
    except FileNotFoundError:
        want = None
    check(text == want, "golden %s:\n--- got ---\n%s--- want ---\n%s" % (name, text, want))


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def t(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def main():
    d = tmpdir()
    try:
        os.chdir(d)
        # ---- golden dry runs
        write_mammoth("mlp.pt", "mnistmlp", model="derpp")
        write_mammoth("r18.pt", "resnet18", model="er", buffer_size=10)
        for name, args in [("mlp_backbone", ["mlp.pt", "out.pt", "--backbone"]),
                           ("mlp_backbone_keep_nohead", ["mlp.pt", "out.pt", "--backbone", "--keep-aliases", "--drop-classifier"]),
                           ("mlp_rename", ["mlp.pt", "out.h5", "--rename", "net.classifier.=head.", "--rename", "net.=backbone."]),
                           ("r18_backbone_nohead", ["r18.pt", "out.safetensors", "--backbone", "--drop-classifier"])]:
            rc, out, err = convert(*args, "--dry-run")
            golden(name + ".txt", out)
        check(not os.path.exists("out.pt") and not os.path.exists("out.h5"), "--dry-run writes nothing")

        # wrappers in either order, as whole components only
        sd = collections.OrderedDict()
        sd["_orig_mod.module.conv.weight"] = t(4, 3)
        sd["module._orig_mod.conv.bias"] = t(4, seed=1)
        sd["module.submodule.weight"] = t(2, seed=2)
        sd["module.module_list.0.weight"] = t(2, seed=3)
        sd["_orig_mod.head.module"] = t(1, seed=4)  # a leaf named module stays
        torch.save(sd, "wrapped.pt")
        rc, out, err = convert("wrapped.pt", "clean.pt", "--strip-prefix", "auto", "--dry-run")
        golden("wrapped_auto.txt", out)
        convert("wrapped.pt", "clean.pt", "--strip-prefix", "auto")
        clean = torch.load("clean.pt", weights_only=True)
        check(list(clean) == ["conv.weight", "conv.bias", "submodule.weight", "module_list.0.weight", "head.module"],
              "auto strip: %s" % list(clean))
        check(all(torch.equal(clean[k2], sd[k1]) for k1, k2 in zip(sd, clean)), "values follow their keys")

        # an explicit leading prefix, repeated to a fixed point
        lt = {"state_dict": collections.OrderedDict((("model.model.a.weight", t(2)), ("model.b", t(3)))),
              "global_step": 7, "pytorch-lightning_version": "2.1.0"}
        torch.save(lt, "lightning.pt")
        rc, out, err = convert("lightning.pt", "l2.pt", "--strip-prefix", "model.", "--dry-run")
        golden("lightning_prefix.txt", out)
        convert("lightning.pt", "l2.pt", "--strip-prefix", "model.")
        l2 = torch.load("l2.pt", weights_only=True)
        check(list(l2["state_dict"]) == ["a.weight", "b"] and l2["global_step"] == 7, "Lightning state_dict stripped: %s" % list(l2["state_dict"]))

        # ---- a Mammoth model saved through DataParallel (net.module.*): optimizer untouched
        ck = load("r18.pt")
        ck["model"] = collections.OrderedDict(("net.module." + k[4:], v) for k, v in ck["model"].items())
        torch.save(ck, "mammoth_dp.pt")
        convert("mammoth_dp.pt", "mammoth_clean.pt", "--strip-prefix", "auto")
        back = load("mammoth_clean.pt")
        orig = load("r18.pt")
        check(list(back["model"]) == list(orig["model"]), "net.module.* -> net.*")
        check(not deep_equal(back["optimizer"], orig["optimizer"]), "optimizer state unchanged (keyed by index)")
        check(not deep_equal(back["buffer"], orig["buffer"]) and back["args"] == orig["args"], "buffer and args unchanged")
        from common import mammoth_ref
        check(mammoth_ref.main(["load", "mammoth_clean.pt", "--arch", "resnet18", "--model", "er", "--buffer-size", "10"]) == 0,
              "Mammoth loads the cleaned checkpoint")

        # ---- collisions are errors naming both keys; nothing is written
        col = collections.OrderedDict((("module.fc.weight", t(2)), ("fc.weight", t(2, seed=1))))
        torch.save(col, "collide.pt")
        for args in (["--strip-prefix", "auto"], ["--rename", "module.fc=fc"]):
            rc, out, err = convert("collide.pt", "c.pt", *args, ok=False)
            check(rc == 2 and "module.fc.weight" in err and "'fc.weight'" in err and "collision" in err,
                  "collision %s: exit %d, %s" % (args, rc, err.strip()))
            check(not os.path.exists("c.pt"), "no output after a collision")
        rc, out, err = convert("collide.pt", "c.pt", "--strip-prefix", "auto", "--dry-run", ok=False)
        check(rc == 2 and "collision" in err, "--dry-run reports the collision too")

        # ---- output safety: existing output, the input itself, a hard link to it
        before = sha("r18.pt")
        with open("exists.pt", "wb") as f:
            f.write(b"keep me")
        rc, _, err = convert("r18.pt", "exists.pt", ok=False)
        check(rc == 2 and "--force" in err, "existing output refused without --force: %s" % err.strip())
        check(open("exists.pt", "rb").read() == b"keep me", "existing output untouched")
        convert("r18.pt", "exists.pt", "--force")
        check(load("exists.pt")["args"] == orig["args"], "--force replaces it")
        for target in ("r18.pt", "./r18.pt"):
            rc, _, err = convert("r18.pt", target, "--force", "--backbone", ok=False)
            check(rc == 2 and "input" in err, "output == input refused (%s): %s" % (target, err.strip()))
        os.link("r18.pt", "r18_link.pt")
        rc, _, err = convert("r18.pt", "r18_link.pt", "--force", ok=False)
        check(rc == 2, "a hard link to the input is the input: refused")
        check(sha("r18.pt") == before, "the input is never modified")
        leftovers = [f for f in os.listdir(".") if ".tmp." in f or f.startswith(".")]
        check(not leftovers, "no temporary files left: %s" % leftovers)

        # ---- errors name the key and the reason
        rc, _, err = convert("r18.pt", "bad.pt", "--rename", "noequals", ok=False)
        check(rc == 2 and "FROM=TO" in err, "bad --rename: %s" % err.strip())
        rc, _, err = convert("r18.pt", "bad.xyz", ok=False)
        check(rc == 2 and "--to" in err, "unknown output extension asks for --to: %s" % err.strip())
        rc, _, err = convert("missing.pt", "bad.pt", ok=False)
        check(rc == 2 and "missing.pt" in err, "missing input: %s" % err.strip())
        rc, out, _ = convert("--help")
        check(rc == 0 and "--backbone" in out and "--strip-prefix" in out and "Examples" in out, "--help documents the options")
    finally:
        os.chdir("/")
        rmtree(d)
    finish()


if __name__ == "__main__":
    main()
