"""Where SDSS files live: names, the local data-dir layout and SAS paths per release.

Local layout (ARCHITECTURE.md 1), the one of ``../shared/data/sdss``::

    DATA_DIR/RUN/CAMCOL/FIELD/frame-{band}-RRRRRR-C-FFFF.fits[.bz2|.gz]
    DATA_DIR/RUN/CAMCOL/FIELD/psField-RRRRRR-C-FFFF.fit
    DATA_DIR/RUN/CAMCOL/FIELD/fpM-RRRRRR-{band}C-FFFF.fit[.gz]
    DATA_DIR/RUN/CAMCOL/FIELD/photoObj-RRRRRR-C-FFFF.fits
    DATA_DIR/RUN/CAMCOL/photoField-RRRRRR-C.fits

SAS layout (ENGINEERING.md 5.1): below ``{base}/dr{N}/{boss|eboss}/`` with imaging rerun 301.
"""

from dataclasses import dataclass
from pathlib import Path

from celestecli.fields import FieldID
from celestecli.sdss import BANDS

RERUN = 301
RELEASES = tuple(range(8, 18))
COMPRESSED_SUFFIXES = ("", ".bz2", ".gz")

# Kinds of file per field; "photoField" is per run/camcol.
KINDS = ("frame", "psField", "fpM", "photoObj", "photoField")


@dataclass(frozen=True)
class SDSSFile:
    """One SDSS file of a field: its kind, band (or None), name as served and SAS path."""

    fid: FieldID
    kind: str
    band: str | None
    name: str  # file name as served by the SAS (with its compression suffix)
    sas_relpath: str  # path below {base}/dr{N}/{root}/

    def local_path(self, data_dir: Path) -> Path:
        """Path of this file under the local layout."""
        return local_dir(data_dir, self.fid, self.kind) / self.name

    def local_variants(self, data_dir: Path) -> list[Path]:
        """Every local path this file may have: plain, ``.bz2`` or ``.gz`` (as find_local)."""
        folder = local_dir(data_dir, self.fid, self.kind)
        name = base_name(self.fid, self.kind, self.band)
        return [folder / (name + suffix) for suffix in COMPRESSED_SUFFIXES]


def release_root(release: int) -> str:
    """``dr12/boss`` for DR8-DR12, ``dr17/eboss`` for DR13-DR17."""
    if release not in RELEASES:
        raise ValueError(f"unsupported SDSS data release {release}: choose 8-17")
    return f"dr{release}/{'boss' if release <= 12 else 'eboss'}"


def local_dir(data_dir: Path, fid: FieldID, kind: str) -> Path:
    base = Path(data_dir) / str(fid.run) / str(fid.camcol)
    return base if kind == "photoField" else base / str(fid.field)


def base_name(fid: FieldID, kind: str, band: str | None = None) -> str:
    """Uncompressed file name of one SDSS file."""
    if kind == "frame":
        return f"frame-{band}-{fid.stem}.fits"
    if kind == "psField":
        return f"psField-{fid.stem}.fit"
    if kind == "fpM":
        return f"fpM-{fid.run:06d}-{band}{fid.camcol}-{fid.field:04d}.fit"
    if kind == "photoObj":
        return f"photoObj-{fid.stem}.fits"
    if kind == "photoField":
        return f"photoField-{fid.run:06d}-{fid.camcol}.fits"
    raise ValueError(f"unknown SDSS file kind {kind!r}")


def field_files(fid: FieldID, bands: str = BANDS) -> list[SDSSFile]:
    """The files ``celeste fetch`` downloads for one field, as the SAS serves them."""
    r, c = fid.run, fid.camcol
    redux = f"photo/redux/{RERUN}/{r}/objcs/{c}"
    files = [
        SDSSFile(fid, "frame", b, base_name(fid, "frame", b) + ".bz2",
                 f"photoObj/frames/{RERUN}/{r}/{c}/{base_name(fid, 'frame', b)}.bz2")
        for b in bands
    ]
    files.append(SDSSFile(fid, "psField", None, base_name(fid, "psField"),
                          f"{redux}/{base_name(fid, 'psField')}"))
    files += [
        SDSSFile(fid, "fpM", b, base_name(fid, "fpM", b) + ".gz",
                 f"{redux}/{base_name(fid, 'fpM', b)}.gz")
        for b in bands
    ]
    files.append(SDSSFile(fid, "photoObj", None, base_name(fid, "photoObj"),
                          f"photoObj/{RERUN}/{r}/{c}/{base_name(fid, 'photoObj')}"))
    files.append(SDSSFile(fid, "photoField", None, base_name(fid, "photoField"),
                          f"photoObj/{RERUN}/{r}/{base_name(fid, 'photoField')}"))
    return files


def sas_url(base_url: str, release: int, f: SDSSFile) -> str:
    return f"{base_url.rstrip('/')}/{release_root(release)}/{f.sas_relpath}"


def find_local(data_dir: Path, fid: FieldID, kind: str, band: str | None = None) -> Path | None:
    """The existing local copy of a file (plain, .bz2 or .gz), or None."""
    folder = local_dir(data_dir, fid, kind)
    name = base_name(fid, kind, band)
    for suffix in COMPRESSED_SUFFIXES:
        p = folder / (name + suffix)
        if p.is_file():
            return p
    return None
