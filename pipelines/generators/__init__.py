"""Seeded event generators: the same seed and arguments give the same events, byte for byte."""
