"""Audio file I/O: reading at a fixed rate, streaming long files, atomic writes.

Conventions: arrays are (channels, time) float32, channel 0 = left ear, 1 = right;
everything is resampled to ``fs`` (16 kHz by default) on the way in.
All problems with a file are reported as :class:`AudioError` with a one-line
message that starts with the file name, so the CLI can print it as is.
"""

from __future__ import annotations

import io
import math
import re
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

__all__ = [
    "AudioError",
    "read_audio",
    "audio_info",
    "iter_audio_blocks",
    "write_wav",
    "atomic_write_text",
]


class AudioError(ValueError):
    """A problem with an audio file (missing, unreadable, wrong layout, bad samples)."""


# ----------------------------------------------------------------------------- helpers


def _one_line(err: BaseException) -> str:
    """Collapse an exception message to one line (libsndfile messages may contain newlines)
    and drop soundfile's "Error opening '<path>': " prefix, since callers name the file."""
    msg = " ".join(str(err).split())
    msg = re.sub(r"^Error opening .*?: ", "", msg)
    return msg or type(err).__name__


def _name(path) -> str:
    return str(path)


def _check_exists(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{_name(path)}: file not found")
    if not p.is_file():
        raise AudioError(f"{_name(path)}: not a regular file")
    if p.stat().st_size == 0:
        raise AudioError(f"{_name(path)}: file is empty (0 bytes)")
    return p


def _ratio(sr: int, fs: int) -> tuple[int, int]:
    """Reduced (up, down) so that sr * up / down == fs."""
    g = math.gcd(int(sr), int(fs))
    return int(fs) // g, int(sr) // g


def _check_fs(fs) -> int:
    if int(fs) != fs or fs <= 0:
        raise AudioError(f"invalid target sample rate: {fs!r}")
    return int(fs)


def _wav_declared_frames(path: Path) -> int | None:
    """Frame count that a RIFF/WAVE header *declares* for its data chunk, or None.

    libsndfile silently reads what is there when a WAV file is truncated, so the
    declared size is compared with what it found.  None when the file is not a
    plain RIFF WAVE or the size is a streaming placeholder (0 or 0xFFFFFFFF).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = None
            while True:
                ch = f.read(8)
                if len(ch) < 8:
                    return None
                cid, size = ch[:4], struct.unpack("<I", ch[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size)
                    if len(fmt) < 14:
                        return None
                    block_align = struct.unpack("<H", fmt[12:14])[0]
                    if size & 1:
                        f.seek(1, os.SEEK_CUR)
                    continue
                if cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None


def _open_info(path):
    """sf.info with errors turned into AudioError; also detects truncated WAV files."""
    p = _check_exists(path)
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{_name(path)}: cannot read audio file ({_one_line(e)})") from None
    except OSError as e:
        raise AudioError(f"{_name(path)}: cannot open file ({_one_line(e)})") from None
    if info.frames <= 0:
        raise AudioError(f"{_name(path)}: file contains no audio samples")
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(f"{_name(path)}: invalid header (rate {info.samplerate}, {info.channels} channels)")
    declared = _wav_declared_frames(p)
    if declared is not None and declared > info.frames:
        raise AudioError(
            f"{_name(path)}: file is truncated (header declares {declared} frames, only {info.frames} present)"
        )
    return info


def _check_channels(path, channels: int, mono_ok: bool) -> None:
    if channels > 2 or (not mono_ok and channels != 2):
        raise AudioError(f"{_name(path)}: expected 2 channels (left, right), got {channels}")


def _check_finite(path, x: np.ndarray, where: str = "") -> None:
    if not np.isfinite(x).all():
        raise AudioError(f"{_name(path)}: contains NaN or infinite samples{where}")


# ----------------------------------------------------------------------------- reading


def audio_info(path) -> tuple[int, int, int]:
    """(samplerate, channels, frames) from the header only, without reading samples.

    AudioError for a missing, unreadable, empty or truncated (WAV) file.
    """
    info = _open_info(path)
    return int(info.samplerate), int(info.channels), int(info.frames)


def read_audio(path, fs: int = 16000, *, mono_ok: bool = True) -> np.ndarray:
    """Read a wav/flac/ogg file as (channels, time) float32 resampled to ``fs``.

    With ``mono_ok=False`` the file must be stereo (left, right); more than two
    channels is always an error.  Raises AudioError for a missing, unreadable,
    corrupt, truncated or empty file and for NaN/inf samples.
    """
    fs = _check_fs(fs)
    info = _open_info(path)
    _check_channels(path, info.channels, mono_ok)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise AudioError(f"{_name(path)}: cannot decode audio, file corrupt or truncated ({_one_line(e)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{_name(path)}: file contains no audio samples")
    if data.shape[0] < info.frames:
        raise AudioError(
            f"{_name(path)}: file is truncated (header declares {info.frames} frames, decoded {data.shape[0]})"
        )
    x = data.T  # (channels, time)
    _check_finite(path, x)
    if sr != fs:
        up, down = _ratio(sr, fs)
        # float64 filtering avoids accumulating float32 rounding in the polyphase filter
        x = resample_poly(x.astype(np.float64), up, down, axis=-1)
    return np.ascontiguousarray(x, dtype=np.float32)


def _resample_context(up: int, down: int) -> int:
    """Input samples each side that resample_poly's default filter reaches (plus margin)."""
    half_len = 10 * max(up, down)  # scipy's default FIR half length, in upsampled samples
    return -(-half_len // up) + 2


def iter_audio_blocks(path, block_s: float, overlap_s: float, fs: int = 16000) -> Iterator[np.ndarray]:
    """Stream a stereo file as (2, n) float32 blocks at ``fs`` with bounded memory.

    Block k covers output samples [k*hop, k*hop + n) with n = round(block_s*fs) and
    hop = n - round(overlap_s*fs); the last block is shorter when the file ends.
    Joining block 0 with blocks 1.. minus their first ``overlap`` samples gives the
    same signal as :func:`read_audio` (each block is resampled from a segment read
    with enough filter context and aligned to the global resampling grid, so block
    edges do not add artefacts).  AudioError for a non-stereo file or NaN/inf samples.
    """
    fs = _check_fs(fs)
    n = int(round(block_s * fs))
    m = int(round(overlap_s * fs))
    if n <= 0:
        raise AudioError(f"{_name(path)}: block length must be positive, got {block_s} s")
    if m < 0 or m >= n:
        raise AudioError(f"{_name(path)}: overlap must be in [0, block length), got {overlap_s} s for {block_s} s blocks")
    info = _open_info(path)
    _check_channels(path, info.channels, mono_ok=False)
    return _blocks(path, info, n, n - m, fs)


def _blocks(path, info, n: int, hop: int, fs: int) -> Iterator[np.ndarray]:
    sr, n_in = int(info.samplerate), int(info.frames)
    up, down = _ratio(sr, fs)
    n_out = -(-n_in * up // down)  # resample_poly output length for the whole file
    pad = 0 if up == down == 1 else _resample_context(up, down)
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{_name(path)}: cannot read audio file ({_one_line(e)})") from None
    with f:
        start = 0
        while start < n_out:
            stop = min(start + n, n_out)
            # input segment starting on a multiple of `down` so that its output grid
            # coincides with the whole-file grid (output index k*up <-> input k*down)
            k = max(0, (start * down // up - pad) // down)
            seg_start = k * down
            seg_stop = min(n_in, -(-stop * down // up) + pad)
            try:
                f.seek(seg_start)
                seg = f.read(seg_stop - seg_start, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioError(f"{_name(path)}: cannot decode audio, file corrupt or truncated ({_one_line(e)})") from None
            if seg.shape[0] < seg_stop - seg_start:
                raise AudioError(f"{_name(path)}: file is truncated (read stopped at frame {seg_start + seg.shape[0]})")
            _check_finite(path, seg, f" (near {seg_start / sr:.2f} s)")
            x = seg.T
            if up != down:
                x = resample_poly(x.astype(np.float64), up, down, axis=-1)
            off = k * up
            yield np.ascontiguousarray(x[:, start - off : stop - off], dtype=np.float32)
            if stop >= n_out:
                break
            start += hop


# ----------------------------------------------------------------------------- writing


def _atomic_write_bytes(path: Path, data, durable: bool) -> None:
    """Write ``data`` to a temp file in ``path``'s folder (one open), give it normal permissions
    (mkstemp makes it 0600), optionally fsync, and rename it over ``path``."""
    d = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


def _zero_peak_timestamp(buf: bytearray) -> None:
    """libsndfile stores a wall-clock timestamp in the PEAK chunk of float WAVs; zero it
    (in the encoded bytes) so identical data gives identical files."""
    if len(buf) < 12 or bytes(buf[:4]) not in (b"RIFF", b"RF64") or bytes(buf[8:12]) != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(buf):
        cid, size = bytes(buf[pos:pos + 4]), struct.unpack("<I", buf[pos + 4:pos + 8])[0]
        if cid == b"PEAK":
            buf[pos + 12:pos + 16] = b"\0\0\0\0"  # after the 4-byte version field
            return
        if cid == b"data":
            return  # libsndfile writes PEAK before data
        pos += 8 + size + (size & 1)


def _format_for(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    fmt = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}.get(ext)
    if fmt is None:
        raise AudioError(f"{path}: unsupported output extension (use .wav, .flac or .ogg)")
    return fmt


def write_wav(path, x: np.ndarray, fs: int = 16000, subtype: str = "FLOAT", *, durable: bool = True) -> None:
    """Atomically write ``x`` (channels, time) -- or (time,) as mono -- to ``path``.

    The file is encoded in memory, written to a temp file in the same folder and renamed over
    ``path``, so a crash never leaves a half-written file. ``durable`` also fsyncs before the
    rename (survives power loss; costs ~1 ms a file). The format follows the extension
    (.wav default; .flac/.ogg need a matching subtype). WAV output is byte-identical
    for identical input. PCM subtypes clip to [-1, 1].
    """
    path = Path(path)
    fs = _check_fs(fs)
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise AudioError(f"{path}: expected a non-empty (channels, time) array, got shape {x.shape}")
    if x.shape[0] > 32:
        # (time, channels) passed by mistake is the classic bug
        raise AudioError(f"{path}: got shape {x.shape}, which looks like (time, channels); expected (channels, time)")
    if not np.issubdtype(x.dtype, np.floating):
        raise AudioError(f"{path}: expected float samples, got dtype {x.dtype}")
    _check_finite(path, x)
    fmt = _format_for(path)
    if not sf.check_format(fmt, subtype):
        raise AudioError(f"{path}: subtype {subtype!r} not valid for {fmt} files")
    d = path.parent if str(path.parent) else Path(".")
    if not d.is_dir():
        raise AudioError(f"{path}: output folder does not exist")
    mem = io.BytesIO()
    sf.write(mem, np.ascontiguousarray(x.T), fs, subtype=subtype, format=fmt)
    data = bytearray(mem.getbuffer())
    if fmt == "WAV":
        _zero_peak_timestamp(data)
    _atomic_write_bytes(path, data, durable)


def atomic_write_text(path, text: str, *, durable: bool = True) -> None:
    """Write ``text`` (UTF-8, newlines untouched) to ``path`` via temp file + rename
    (``durable``: fsync first)."""
    _atomic_write_bytes(Path(path), text.encode("utf-8"), durable)


def _remove_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass
