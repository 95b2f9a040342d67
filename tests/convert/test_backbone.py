#!/usr/bin/python3
"""ckpt-convert --backbone on Mammoth checkpoints from the reference writer,
loaded back by real PyTorch: torch.load(weights_only=True) and a strict
load_state_dict into modules with Mammoth's MNIST-MLP and CIFAR ResNet-18 key
layouts; Mammoth's own loader (_load_net) accepts the files too."""
import collections
import os

import torch
import torch.nn as nn

from common import check, convert, deep_equal, finish, load, mammoth_ref, rmtree, tmpdir, write_mammoth


class UniqueMLP(nn.Module):
    """MNIST-MLP with only its parameters' own names (what --backbone keeps)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 100)
        self.fc2 = nn.Linear(100, 100)
        self.classifier = nn.Linear(100, 10)


def weights_only(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        check(False, "%s: torch.load(weights_only=True) failed: %s" % (path, e))
        return None


def strict_load(module, sd, what):
    try:
        module.load_state_dict(sd, strict=True)
        check(True, what)
    except RuntimeError as e:
        check(False, "%s: strict load failed: %s" % (what, str(e)[:300]))


def same_values(out_sd, src_model, prefix, what):
    for k, v in out_sd.items():
        src = src_model.get(prefix + k)
        check(src is not None and torch.equal(src, v) and src.dtype == v.dtype, "%s: %s equals %s%s" % (what, k, prefix, k))


def main():
    d = tmpdir()
    try:
        # ---- MNIST-MLP: 16 keys, aliases dropped by default
        mlp = write_mammoth(os.path.join(d, "mlp.pt"), "mnistmlp", model="derpp")
        src = load(mlp)["model"]
        out = os.path.join(d, "mlp_bb.pt")
        convert(mlp, out, "--backbone")
        sd = weights_only(out)
        check(list(sd.keys()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "classifier.weight", "classifier.bias"],
              "MLP backbone keeps the 6 canonical keys in order: %s" % list(sd.keys()))
        check(isinstance(sd, collections.OrderedDict), "backbone is an OrderedDict")
        meta = getattr(sd, "_metadata", {})
        check("" in meta and "fc1" in meta and "net.fc1" not in meta and "net.net.0" not in meta,
              "_metadata module paths lose net.: %s" % list(meta)[:6])
        strict_load(UniqueMLP(), sd, "MLP backbone -> UniqueMLP strict")
        same_values(sd, src, "net.", "MLP backbone")
        p = mammoth_ref.main(["load", out, "--arch", "mnistmlp"])
        check(p == 0, "Mammoth's _load_net accepts the MLP backbone")

        # ---- --keep-aliases: all 16 keys, loadable into Mammoth's MNISTMLP (strict)
        out2 = os.path.join(d, "mlp_bb_alias.pt")
        convert(mlp, out2, "--backbone", "--keep-aliases")
        sd2 = weights_only(out2)
        check(len(sd2) == 16, "keep-aliases keeps 16 keys (%d)" % len(sd2))
        strict_load(mammoth_ref.MNISTMLP(), sd2, "MLP backbone --keep-aliases -> MNISTMLP strict")
        check(sd2["fc1.weight"].data_ptr() == sd2["_features.0.weight"].data_ptr() == sd2["net.0.0.weight"].data_ptr(),
              "aliases still share one storage")

        # ---- --drop-classifier drops classifier.* and its aliases net.1.*
        out3 = os.path.join(d, "mlp_bb_nohead.pt")
        convert(mlp, out3, "--backbone", "--keep-aliases", "--drop-classifier")
        sd3 = weights_only(out3)
        check(not any("classifier" in k or k.startswith("net.1.") for k in sd3), "no head keys: %s" % list(sd3))
        check(len(sd3) == 12, "12 keys without the head (%d)" % len(sd3))
        missing, unexpected = mammoth_ref.MNISTMLP().load_state_dict(sd3, strict=False)
        check(sorted(missing) == ["classifier.bias", "classifier.weight", "net.1.bias", "net.1.weight"] and not unexpected,
              "only the head is missing: %s %s" % (missing, unexpected))

        # ---- ResNet-18 (122 keys, buffers incl. num_batches_tracked)
        r18 = write_mammoth(os.path.join(d, "r18.pt"), "resnet18", model="er", buffer_size=20)
        srcr = load(r18)["model"]
        outr = os.path.join(d, "r18_bb.pt")
        convert(r18, outr, "--backbone")
        sdr = weights_only(outr)
        check(len(sdr) == 122, "ResNet-18 backbone has 122 keys (%d)" % len(sdr))
        check(sum(k.endswith("num_batches_tracked") for k in sdr) == 20, "buffers kept (num_batches_tracked x20)")
        strict_load(mammoth_ref.resnet18(), sdr, "ResNet-18 backbone strict")
        same_values(sdr, srcr, "net.", "ResNet-18 backbone")
        check(mammoth_ref.main(["load", outr, "--arch", "resnet18"]) == 0, "Mammoth's _load_net accepts the ResNet-18 backbone")
        outr2 = os.path.join(d, "r18_nohead.pt")
        convert(r18, outr2, "--backbone", "--drop-classifier")
        sdr2 = weights_only(outr2)
        m, u = mammoth_ref.resnet18().load_state_dict(sdr2, strict=False)
        check(sorted(m) == ["classifier.bias", "classifier.weight"] and not u, "ResNet-18 without head: %s %s" % (m, u))

        # ---- a DataParallel-saved checkpoint (module.net.*): wrappers go too
        dp = write_mammoth(os.path.join(d, "dp.pt"), "resnet18", prefix="module.")
        outdp = os.path.join(d, "dp_bb.pt")
        convert(dp, outdp, "--backbone")
        sddp = weights_only(outdp)
        strict_load(mammoth_ref.resnet18(), sddp, "module.net.* backbone strict")
        check(list(sddp) == list(sdr), "module.net.* gives the same keys as net.*")

        # ---- --backbone composes with --to h5 / safetensors and back
        h5 = os.path.join(d, "r18_bb.h5")
        convert(r18, h5, "--backbone")
        back = os.path.join(d, "r18_bb_back.pt")
        convert(h5, back)
        check(not deep_equal(weights_only(back), sdr, sharing={}), "backbone .pt -> .h5 -> .pt is bit-exact")
        st = os.path.join(d, "mlp_bb.safetensors")
        convert(mlp, st, "--backbone")
        back2 = os.path.join(d, "mlp_bb_st.pt")
        convert(st, back2)
        sd_st = weights_only(back2)
        check(list(sd_st) == list(sd) and all(torch.equal(sd_st[k], sd[k]) for k in sd),
              "backbone via safetensors keeps keys, order and values")

        # ---- a file without net.* keys is refused for --backbone
        plain = os.path.join(d, "plain.pt")
        torch.save(collections.OrderedDict(w=torch.zeros(2)), plain)
        rc, _, err = convert(plain, os.path.join(d, "x.pt"), "--backbone", ok=False)
        check(rc == 2 and "no key is left" in err, "no net.* keys: exit 2 with a reason (%d %s)" % (rc, err.strip()))
    finally:
        rmtree(d)
    finish()


if __name__ == "__main__":
    main()
