"""The pretrained weights we know about, each pinned to an npm tarball and to the bytes it yields.

A :class:`WeightSpec` says where a weights file comes from (an npm package version whose tarball
hash is pinned, and the key of the resource inside it) and what it must be (size, sha256). The
files are never vendored into git: ``liwi weights fetch`` assembles them on the user's machine.

:data:`WEIGHTS` is the registry, keyed by name. Tests add a temporary spec with
``monkeypatch.setitem(WEIGHTS, spec.name, spec)``; every function also accepts a spec in place of a name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class WeightsError(RuntimeError):
    """A weights file is unknown, missing, corrupt or could not be fetched.

    The message is one line naming what failed and the command that fixes it.
    """


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained weights file and the npm tarball it is reassembled from.

    ``tarball_sha512`` is the hex sha512 of the ``.tgz`` that ``npm pack package@version`` writes (the
    same digest as the registry's ``dist.integrity``); ``resource`` is the key of the file in the
    tarball's ``package/dist/resources.json``; ``size`` (bytes) and ``sha256`` (hex) describe the
    reassembled file, stored as ``file_name`` in the weights folder.
    """

    name: str
    package: str
    version: str
    tarball_sha512: str
    tarball_size: int
    resource: str
    size: int
    sha256: str
    licence: str
    description: str
    file_name: str

    def __post_init__(self) -> None:
        problems = []
        if not _NAME.fullmatch(self.name):
            problems.append(f"name {self.name!r} is not lower-case kebab-case")
        if not _FILE.fullmatch(self.file_name) or self.file_name in (".", ".."):
            problems.append(f"file_name {self.file_name!r} is not a plain file name")
        if not _HEX64.fullmatch(self.sha256):
            problems.append(f"sha256 {self.sha256!r} is not 64 lower-case hex digits")
        if not _HEX128.fullmatch(self.tarball_sha512):
            problems.append(f"tarball_sha512 {self.tarball_sha512!r} is not 128 lower-case hex digits")
        if self.size <= 0 or self.tarball_size <= 0:
            problems.append(f"sizes must be positive (size={self.size}, tarball_size={self.tarball_size})")
        if problems:
            raise ValueError(f"WeightSpec {self.name!r}: " + "; ".join(problems))

    @property
    def source(self) -> str:
        """The npm spec the file comes from, e.g. ``@imgly/background-removal-data@1.4.5``."""
        return f"{self.package}@{self.version}"


# Both IS-Net files come from one npm tarball (fetching both downloads it once).
_IMGLY_PACKAGE = "@imgly/background-removal-data"
_IMGLY_VERSION = "1.4.5"
# sha512 of imgly-background-removal-data-1.4.5.tgz; in base64 it is the registry's dist.integrity
# "sha512-iRXZpPd7YirbJ4eOZ3SlvbdJkAc/LxVjzWLMHOezmRrVThPJPdPc+Y2kHEAVFEVvpDIuvBDyOfTTFBSJT2QR5w=="
_IMGLY_TARBALL_SHA512 = ("8915d9a4f77b622adb27878e6774a5bdb74990073f2f1563cd62cc1ce7b3991a"
                         "d54e13c93dd3dcf98da41c401514456fa4322ebc10f239f4d31414894f6411e7")
_IMGLY_TARBALL_SIZE = 136_455_985
# package/ThirdPartyLicenses.json: ISNET, https://github.com/xuebinqin/DIS, MIT; package/LICENSE.md: AGPL-3.0
_IMGLY_LICENCE = "MIT (model, xuebinqin/DIS); package AGPL-3.0"


def _imgly(name: str, resource: str, size: int, sha256: str, description: str) -> WeightSpec:
    return WeightSpec(name=name, package=_IMGLY_PACKAGE, version=_IMGLY_VERSION,
                      tarball_sha512=_IMGLY_TARBALL_SHA512, tarball_size=_IMGLY_TARBALL_SIZE,
                      resource=resource, size=size, sha256=sha256, licence=_IMGLY_LICENCE,
                      description=description, file_name=f"{name}.onnx")


WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        _imgly("isnet-medium", "/models/medium", 88_188_479,
               "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb",
               "IS-Net (DIS) salient-object segmentation, ONNX with fp16 weights; input 'input' float32 "
               "[1,3,1024,1024], output 'output' float32 [1,1,1024,1024]"),
        _imgly("isnet-small", "/models/small", 44_342_436,
               "7001d60734fdc112dd9c062635fb59cd401fb82a9d4213134bce4dbd655c803a",
               "IS-Net (DIS) salient-object segmentation, ONNX with uint8 dynamically quantized weights "
               "(ConvInteger); input 'input' float32 [1,3,1024,1024], output 'output' float32 [1,1,1024,1024]"),
    )
}


def get_spec(name: str | WeightSpec) -> WeightSpec:
    """The registered spec called ``name`` (a spec is returned as is); unknown names list the valid ones."""
    if isinstance(name, WeightSpec):
        return name
    try:
        return WEIGHTS[name]
    except KeyError:
        raise WeightsError(f"unknown weights {name!r}; valid names: {', '.join(sorted(WEIGHTS))}") from None
