"""Provenance of a catalog: who made it, how, when, from what (ENGINEERING.md 3.4).

In FITS it lives in the primary header (``CELESTEV``, ``GITREV``, ``DATE``, ``CMDLINE``,
fields, threads, OpenMP, ``DEPNAMnn``/``DEPVERnn``, ``HISTORY``) and in an ``INPUTS`` table HDU
(path, URL, SHA-256 of every input file); in ECSV the same facts go into the YAML metadata.
"""

import hashlib
import shlex
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from celestecli import __version__
from celestecli.revision import git_revision

# Packages whose versions go into DEPNAMnn/DEPVERnn, in this order (python first).
DEPENDENCIES = ("numpy", "scipy", "astropy", "click", "sep", "threadpoolctl")

_RESERVED = {
    "SIMPLE", "BITPIX", "NAXIS", "EXTEND", "CELESTEV", "GITREV", "DATE", "CMDLINE", "SDSSDR",
    "RERUN", "RUN", "CAMCOL", "FIELD", "NFIELDS", "FIELDS", "NTHREADS", "NPROCS", "OPENMP", "SEED",
    "CHECKSUM", "DATASUM", "HISTORY", "COMMENT",
}


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class InputFile:
    """One input of a catalog: path, SHA-256, source URL (if downloaded), ``via`` and ``note``.

    ``via`` is empty for a direct input; for inputs inherited from an input catalog (merge) it
    names that catalog. ``note`` says how the input itself was made, when known.
    """

    path: str
    sha256: str
    url: str = ""
    via: str = ""
    note: str = ""

    @classmethod
    def of(cls, path, url: str = "", via: str = "", note: str = "") -> "InputFile":
        """Describe an existing file, hashing it; the path is stored absolute."""
        p = Path(path).resolve()
        return cls(str(p), sha256_file(p), url, via, note)


_INPUT_FIELDS = ("path", "sha256", "url", "via", "note")


def dependency_versions() -> list[tuple[str, str]]:
    """(name, version) of python and of each installed package in DEPENDENCIES."""
    out = [("python", sys.version.split()[0])]
    for name in DEPENDENCIES:
        try:
            out.append((name, version(name)))
        except PackageNotFoundError:
            continue
    return out


def _valid_extra_key(key: str) -> bool:
    return (0 < len(key) <= 8 and key.upper() == key and key not in _RESERVED
            and not key.startswith(("DEPNAM", "DEPVER")))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class Provenance:
    """What a catalog writer records about the run that produced the catalog.

    Every field is optional; ``date``, ``version``, ``git_revision`` and ``dependencies`` fill
    themselves in (``git_revision`` is "" outside a git checkout, and then not written).
    ``extra`` holds further FITS keywords (names of at most 8 characters, upper case).
    """

    command_line: str | None = None
    fields: list[str] = field(default_factory=list)
    release: int | None = None
    rerun: int | None = None
    n_threads: int | None = None
    n_procs: int | None = None
    openmp: bool | None = None
    seed: int | None = None
    inputs: list[InputFile] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)
    date: str = field(default_factory=_now)
    version: str = __version__
    git_revision: str = field(default_factory=git_revision)
    dependencies: list[tuple[str, str]] = field(default_factory=dependency_versions)

    def __post_init__(self):
        if self.command_line is None:
            self.command_line = shlex.join(["celeste", *sys.argv[1:]])
        self.fields = [str(f) for f in self.fields]
        for key in self.extra:
            if not _valid_extra_key(key):
                raise ValueError(f"bad extra provenance keyword {key!r}: need <= 8 upper-case "
                                 "characters, not a reserved name")

    # --- FITS -------------------------------------------------------------------------------

    def primary_hdu(self) -> fits.PrimaryHDU:
        """An empty primary HDU whose header holds this provenance."""
        hdr = fits.Header()
        hdr["CELESTEV"] = (self.version, "celeste version")
        if self.git_revision:
            hdr["GITREV"] = (self.git_revision, "celeste git commit")
        hdr["DATE"] = (self.date, "UTC date of writing")
        # no comments on cards whose string value may be long: astropy would truncate them
        hdr["CMDLINE"] = self.command_line
        if self.release is not None:
            hdr["SDSSDR"] = (self.release, "SDSS data release")
        if self.rerun is not None:
            hdr["RERUN"] = (self.rerun, "SDSS imaging rerun")
        if len(self.fields) == 1:
            run, camcol, fld = self.fields[0].split("/")
            hdr["RUN"] = (int(run), "SDSS run")
            hdr["CAMCOL"] = (int(camcol), "SDSS camera column")
            hdr["FIELD"] = (int(fld), "SDSS field")
        hdr["NFIELDS"] = (len(self.fields), "number of SDSS fields")
        if self.fields:
            hdr["FIELDS"] = ",".join(self.fields)
        for key, value, comment in (
            ("NTHREADS", self.n_threads, "kernel threads per process"),
            ("NPROCS", self.n_procs, "worker processes"),
            ("OPENMP", self.openmp, "kernels built with OpenMP"),
            ("SEED", self.seed, "random seed"),
        ):
            if value is not None:
                hdr[key] = (value, comment)
        for i, (name, ver) in enumerate(self.dependencies):
            hdr[f"DEPNAM{i:02d}"] = name
            hdr[f"DEPVER{i:02d}"] = ver
        for key, value in self.extra.items():
            hdr[key] = value
        for line in self.history:
            hdr["HISTORY"] = line
        return fits.PrimaryHDU(header=hdr)

    def inputs_hdu(self) -> fits.BinTableHDU:
        """The ``INPUTS`` table HDU: path, sha256, url, via, note (one row per input file)."""
        cols = {name: [getattr(f, name) for f in self.inputs] for name in _INPUT_FIELDS}
        table = Table({name: np.array(vals, dtype=str) if vals else np.array([], dtype="U1")
                       for name, vals in cols.items()})
        hdu = fits.table_to_hdu(table)
        hdu.name = "INPUTS"
        return hdu

    @classmethod
    def from_fits(cls, header: fits.Header, inputs: Table | None) -> "Provenance":
        """Rebuild a Provenance from a primary header and an INPUTS table (either may be bare)."""
        deps = []
        i = 0
        while f"DEPNAM{i:02d}" in header:
            deps.append((str(header[f"DEPNAM{i:02d}"]), str(header.get(f"DEPVER{i:02d}", ""))))
            i += 1
        fields_ = str(header.get("FIELDS", "")).split(",") if header.get("FIELDS") else []
        files = []
        if inputs is not None:
            for row in inputs:
                files.append(InputFile(*(str(row[c]) if c in inputs.colnames else ""
                                         for c in _INPUT_FIELDS)))
        extra = {k: header[k] for k in header if _valid_extra_key(k)}
        return cls(
            command_line=str(header.get("CMDLINE", "")),
            fields=fields_,
            release=header.get("SDSSDR"),
            rerun=header.get("RERUN"),
            n_threads=header.get("NTHREADS"),
            n_procs=header.get("NPROCS"),
            openmp=header.get("OPENMP"),
            seed=header.get("SEED"),
            inputs=files,
            history=[str(h) for h in header.get("HISTORY", [])],
            extra=extra,
            date=str(header.get("DATE", "")),
            version=str(header.get("CELESTEV", "")),
            git_revision=str(header.get("GITREV", "")),
            dependencies=deps,
        )

    # --- ECSV -------------------------------------------------------------------------------

    def to_meta(self) -> dict:
        """Plain nested dict (strings, numbers, lists) for ECSV's YAML header."""
        meta = {
            "celeste_version": self.version,
            "git_revision": self.git_revision,
            "date": self.date,
            "command_line": self.command_line,
            "fields": list(self.fields),
        }
        for key in ("release", "rerun", "n_threads", "n_procs", "openmp", "seed"):
            value = getattr(self, key)
            if value is not None:
                meta[key] = value
        meta["dependencies"] = {name: ver for name, ver in self.dependencies}
        meta["inputs"] = [{name: getattr(f, name) for name in _INPUT_FIELDS}
                          for f in self.inputs]
        if self.history:
            meta["history"] = list(self.history)
        if self.extra:
            meta["extra"] = dict(self.extra)
        return {"provenance": meta}

    @classmethod
    def from_meta(cls, meta: dict) -> "Provenance":
        """Inverse of ``to_meta`` (missing keys become defaults of an unknown run)."""
        p = meta.get("provenance", {}) or {}
        return cls(
            command_line=p.get("command_line", ""),
            fields=list(p.get("fields", [])),
            release=p.get("release"),
            rerun=p.get("rerun"),
            n_threads=p.get("n_threads"),
            n_procs=p.get("n_procs"),
            openmp=p.get("openmp"),
            seed=p.get("seed"),
            inputs=[InputFile(*(str(d.get(name, "")) for name in _INPUT_FIELDS))
                    for d in p.get("inputs", [])],
            history=list(p.get("history", [])),
            extra=dict(p.get("extra", {})),
            date=p.get("date", ""),
            version=p.get("celeste_version", ""),
            git_revision=p.get("git_revision", ""),
            dependencies=list((p.get("dependencies") or {}).items()),
        )
