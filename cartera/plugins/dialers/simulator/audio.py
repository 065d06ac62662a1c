"""Speech-like call audio in the format of Asterisk's MixMonitor: 8 kHz, 16-bit signed, mono PCM.

A few seconds of two voices (an agent and a debtor) and of line noise are synthesised once per process;
a call's recording is then assembled from slices of them, alternating turns, without per-sample work.
"""

from __future__ import annotations

import functools
import math
import os
import random
import sys
import wave
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

RATE = 8000
SAMPLE_WIDTH = 2
_PERIOD = 512  # samples in the table of one pitch period
_ENVELOPE = tuple(math.sin(math.pi * i / 256) ** 1.5 for i in range(257))  # one syllable's loudness
_VOWELS = ((700.0, 1250.0), (450.0, 1850.0), (300.0, 2250.0), (480.0, 900.0), (320.0, 800.0))  # a e i o u


@dataclass(frozen=True)
class Voice:
    """PCM of one speaker and where each word starts in it (byte offsets; the last one is the end)."""

    pcm: bytes
    words: tuple[int, ...]

    def phrase(self, first: int, count: int) -> list[memoryview]:
        """``count`` consecutive words from word ``first``, wrapping around the end (views, not copies)."""
        size = len(self.words) - 1
        pcm = memoryview(self.pcm)
        return [pcm[self.words[k % size] : self.words[k % size + 1]] for k in range(first, first + count)]


@dataclass(frozen=True)
class VoiceBank:
    agent: Voice
    debtor: Voice
    line: bytes  # line noise alone, heard between turns


def _harmonics(f0: float, formants: tuple[float, float], scale: float) -> list[float]:
    """Amplitudes of the harmonics of ``f0`` under a vowel's two formants (telephone band only)."""
    amplitudes = []
    for k in range(1, max(3, min(12, int(3400 / f0))) + 1):
        gain = sum(1.0 / (1.0 + ((k * f0 - formant * scale) / 150.0) ** 2) for formant in formants)
        amplitudes.append((0.2 + gain) / math.sqrt(k))
    return amplitudes


def _period_table(amplitudes: list[float]) -> list[float]:
    table = [
        sum(a * math.sin(2 * math.pi * (k + 1) * i / _PERIOD) for k, a in enumerate(amplitudes)) for i in range(_PERIOD)
    ]
    peak = max(abs(value) for value in table)
    return [value / peak for value in table]


def _speech(rng: random.Random, f0: float, formant_scale: float, seconds: float) -> tuple[list[float], list[int]]:
    """Words of 1-4 voiced syllables with consonant onsets, falling intonation and pauses."""
    tables = [_period_table(_harmonics(f0, vowel, formant_scale)) for vowel in _VOWELS]
    out: list[float] = []
    words: list[int] = []
    phase = 0.0
    declination = 1.08
    while len(out) < seconds * RATE:
        words.append(len(out))
        for _ in range(rng.randint(1, 4)):
            table = rng.choice(tables)
            frames = int(rng.uniform(0.11, 0.26) * RATE)
            step = f0 * declination * rng.uniform(0.93, 1.08) * _PERIOD / RATE
            glide = -0.05 * step / frames
            loudness = rng.uniform(0.6, 1.0)
            hiss = int(0.03 * RATE) if rng.random() < 0.5 else 0
            for i in range(frames):
                phase += step + glide * i
                sample = table[int(phase) % _PERIOD] * _ENVELOPE[i * 256 // frames] * loudness
                if i < hiss:
                    sample += rng.uniform(-0.3, 0.3) * (1 - i / hiss)
                out.append(sample)
        declination *= 0.97
        pause = rng.uniform(0.04, 0.16)
        if rng.random() < 0.3:
            pause += rng.uniform(0.25, 0.6)
            declination = 1.08
        out.extend([0.0] * int(pause * RATE))
    words.append(len(out))
    return out, words


def _pcm(samples: list[float], level: float, noise: list[float]) -> bytes:
    period = len(noise)
    pcm = array(
        "h",
        (
            max(-32768, min(32767, int((sample * level + noise[i % period]) * 32767)))
            for i, sample in enumerate(samples)
        ),
    )
    if sys.byteorder == "big":
        pcm.byteswap()
    return pcm.tobytes()


@functools.cache
def voice_bank() -> VoiceBank:
    """The process's voices, synthesised on first use (the same in every process)."""
    rng = random.Random(RATE)
    noise = [rng.gauss(0.0, 0.005) for _ in range(int(1.5 * RATE))]
    agent, agent_words = _speech(rng, 118.0, 1.0, 10.0)
    debtor, debtor_words = _speech(rng, 205.0, 1.17, 10.0)
    return VoiceBank(
        agent=Voice(_pcm(agent, 0.45, noise), tuple(SAMPLE_WIDTH * w for w in agent_words)),
        debtor=Voice(_pcm(debtor, 0.32, noise), tuple(SAMPLE_WIDTH * w for w in debtor_words)),
        line=_pcm([0.0] * len(noise), 0.0, noise),
    )


def conversation(rng: random.Random, frames: int) -> Iterator[memoryview]:
    """``frames`` frames of an agent and a debtor taking turns, the agent first, in parts: views of the voice
    bank, so that a recording of several MB is never held in memory whole."""
    bank = voice_bank()
    line = memoryview(bank.line)
    left = frames * SAMPLE_WIDTH
    speakers = (bank.agent, bank.debtor)
    turn = 0
    while left > 0:
        voice = speakers[turn % 2]
        words = voice.phrase(rng.randrange(len(voice.words) - 1), rng.randint(2, 9))
        gap = SAMPLE_WIDTH * rng.randint(int(0.15 * RATE), int(0.8 * RATE))
        start = SAMPLE_WIDTH * rng.randrange((len(bank.line) - gap) // SAMPLE_WIDTH)
        for part in (*words, line[start : start + gap]):
            if left > 0:
                yield part[:left]
                left -= len(part)
        turn += 1


def write_wav(path: Path, pcm: Iterable[bytes | memoryview]) -> None:
    """Write the parts of ``pcm`` as a WAV under a temporary name, renamed to ``path`` once complete."""
    partial = path.with_name(f".{path.name}.part")
    try:
        with wave.open(str(partial), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(SAMPLE_WIDTH)
            out.setframerate(RATE)
            for part in pcm:
                out.writeframesraw(part)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
