"""Simulated PBX dialer: realistic outcomes, agents, dispositions and WAV recordings, no external system."""
