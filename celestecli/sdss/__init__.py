"""SDSS specifics: file layout (local and on the SAS), downloads, and readers."""

BANDS = "ugriz"
