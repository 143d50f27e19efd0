"""Model constants as tables (installed as celestecli.data); see README in this folder."""
