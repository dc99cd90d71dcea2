"""Lets fairseq's checkpoint loader read real fairseq checkpoints on torch >= 2.6.

From torch 2.6 on, ``torch.load`` defaults to ``weights_only=True``, and fairseq 0.12's
``checkpoint_utils.load_checkpoint_to_cpu`` calls it without saying otherwise. Every checkpoint that
fairseq wrote before 0.10 (the Baevski & Auli wiki103 model among them) keeps its flags as an
``argparse.Namespace``, and older ones hold NumPy scalars in their training state; torch then refuses the
file ("Unsupported global: GLOBAL argparse.Namespace"), and with it ``--finetune-from-model``,
``fairseq-eval-lm``, ``fairseq-generate`` and ``convert_base_checkpoint``. Data-parallel training fails
too, with any checkpoint: rank 0 loads the state and broadcasts it to the others through
``torch.save``/``torch.load``, with its cfg as an omegaconf ``DictConfig``.

Rather than switch the check off, the classes such checkpoints legitimately hold are allow-listed,
once, when the plugin is imported (fairseq imports ``--user-dir`` before it loads any checkpoint).
Anything else in a file still fails with torch's message naming the class. Nothing happens on a torch
without ``torch.serialization.add_safe_globals`` (< 2.4), whose ``torch.load`` defaults to a full unpickle.
"""
import argparse
import collections
import typing

import torch


def checkpoint_safe_globals():
    """The non-tensor classes fairseq's own checkpoints contain, as (object, name in the pickle) pairs.
    NumPy scalars are pickled as numpy.core.multiarray.scalar by NumPy 1 and numpy._core.multiarray.scalar
    by NumPy 2; a file written under either must load under either."""
    safe = [(argparse.Namespace, "argparse.Namespace"), (collections.defaultdict, "collections.defaultdict"),
            (typing.Any, "typing.Any")]
    safe += _omegaconf_globals()
    try:  # the stand-in for each tensor in fairseq's broadcast_object (tensors travel separately)
        from fairseq.distributed.utils import _TensorPlaceholder
        safe.append((_TensorPlaceholder, "fairseq.distributed.utils._TensorPlaceholder"))
    except ImportError:  # pragma: no cover - another fairseq version
        pass
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - fairseq needs NumPy
        return safe
    try:
        from numpy._core.multiarray import scalar
    except ImportError:
        from numpy.core.multiarray import scalar
    safe += [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
             (np.dtype, "numpy.dtype")]
    dtypes = getattr(np, "dtypes", None)  # NumPy >= 1.25 pickles a dtype by its class
    for n in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        if hasattr(dtypes, n):
            safe.append((getattr(dtypes, n), f"numpy.dtypes.{n}"))
    return safe


def _omegaconf_globals():
    """A DictConfig pickles its containers, their metadata and one node object per value."""
    try:
        import omegaconf
        from omegaconf import base, nodes
    except ImportError:  # pragma: no cover - fairseq needs omegaconf
        return []
    classes = [omegaconf.DictConfig, omegaconf.ListConfig, base.Metadata, base.ContainerMetadata]
    classes += [c for c in vars(nodes).values() if isinstance(c, type) and issubclass(c, nodes.Node)]
    # the metadata names the key, element and object types: builtin classes, referenced by name
    classes += [dict, list, str, int, float, bool]
    return [(c, f"{c.__module__}.{c.__qualname__}") for c in classes]


def _torch_version():
    return tuple(int("".join(c for c in part if c.isdigit()) or 0) for part in torch.__version__.split(".")[:2])


def allow_fairseq_checkpoints():
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:
        return False
    safe = checkpoint_safe_globals()
    if _torch_version() < (2, 5):
        # torch 2.4 takes objects only, each named by its own module (so a NumPy 1 scalar pickled under the
        # other NumPy's name is not recognised there); a (object, name) pair would break every weights_only load
        safe = list({id(obj): obj for obj, _ in safe}.values())
    add(safe)
    return True

allow_fairseq_checkpoints()
