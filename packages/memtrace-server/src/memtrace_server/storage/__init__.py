"""Storage backends behind one protocol; every call names the organisation."""
