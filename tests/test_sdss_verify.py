"""Integrity checks of SDSS files (celestecli.sdss.verify) on real files and damaged copies."""

import bz2
import gzip
import hashlib
from pathlib import Path

import pytest

from celestecli.errors import InputFileError
from celestecli.sdss.verify import verify_file

FIELD_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sdss" / "1000/1/100"
FRAME = "frame-r-001000-1-0100.fits.bz2"  # a 100x100 cut-out: small and quick to decode
PSFIELD = "psField-001000-1-0100.fit"
FPM = "fpM-001000-r1-0100.fit"


@pytest.fixture(scope="module")
def real():
    if not FIELD_DIR.is_dir():
        pytest.skip(f"../shared/data not found: {FIELD_DIR} is missing")
    return {name: (FIELD_DIR / name).read_bytes() for name in (FRAME, PSFIELD, FPM)}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def problem(path: Path, name: str | None = None) -> str:
    with pytest.raises(InputFileError) as info:
        verify_file(path, name)
    assert info.value.path == str(path)
    return info.value.problem


def test_intact_files_pass_and_return_their_sha256(real, tmp_path):
    for name, data in [(FRAME, real[FRAME]), (PSFIELD, real[PSFIELD]),
                       (FPM + ".gz", gzip.compress(real[FPM], mtime=0))]:
        path = write(tmp_path, name, data)
        assert verify_file(path) == hashlib.sha256(data).hexdigest()


def test_damaged_compressed_streams_are_rejected(real, tmp_path):
    frame = real[FRAME]
    truncated = write(tmp_path, FRAME, frame[: len(frame) - 1000])
    assert "bzip2" in problem(truncated)
    flipped = frame[:5000] + bytes(b ^ 0xFF for b in frame[5000:5016]) + frame[5016:]
    assert "bzip2" in problem(write(tmp_path, "x.fits.bz2", flipped))
    fpm = gzip.compress(real[FPM], mtime=0)
    assert "gzip" in problem(write(tmp_path, "x.fit.gz", fpm[:-8]))  # CRC and size cut off


def test_the_name_argument_says_how_a_part_file_is_compressed(real, tmp_path):
    part = write(tmp_path, FRAME + ".part", real[FRAME])
    assert verify_file(part, FRAME) == hashlib.sha256(real[FRAME]).hexdigest()
    assert "2880" in problem(part)  # read as plain FITS, the bzip2 bytes are garbage


def test_fits_structure_is_checked_after_decompression(real, tmp_path):
    psfield = real[PSFIELD]
    assert "multiple of 2880" in problem(write(tmp_path, PSFIELD, psfield[:-100]))
    assert "truncated FITS" in problem(write(tmp_path, PSFIELD, psfield[:-2880]))
    assert "after the last FITS HDU" in problem(write(tmp_path, PSFIELD, psfield + bytes(2880)))
    html = b"<html><body>502 Bad Gateway</body></html>".ljust(2880)
    assert "not a readable FITS" in problem(write(tmp_path, PSFIELD, html))
    # A complete bzip2 stream of a truncated FITS file is still caught.
    frame_fits = bz2.decompress(real[FRAME])
    assert "truncated FITS" in problem(write(tmp_path, FRAME, bz2.compress(frame_fits[:-2880])))
    assert "empty" in problem(write(tmp_path, PSFIELD, b""))


def test_a_file_cut_at_an_hdu_boundary_lacks_hdus_its_kind_has(real, tmp_path):
    from astropy.io import fits

    with fits.open(write(tmp_path, PSFIELD, real[PSFIELD])) as hdul:
        end_of_hdu_2 = hdul.fileinfo(3)["hdrLoc"]  # a well-formed FITS file of 3 HDUs
    assert "has 3 HDUs; a psField file has at least 7" in problem(
        write(tmp_path, "cut-" + PSFIELD, real[PSFIELD][:end_of_hdu_2]), PSFIELD)
