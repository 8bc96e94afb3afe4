"""The texts of the candidate table's slots: UTF-8 in fixed-width rows, long ones in a
bounded overflow.

Memory per slot, all allocated and touched at construction: ``TEXT_BYTES`` (48) bytes
of UTF-8 inline, zero-padded, and a one-byte length (49); plus the overflow's bound of
``OVERFLOW_BYTES_PER_SLOT`` (8) bytes a slot in all.

A longer text (over 16 Han characters, "紧密团结在以江泽民同志为核心的党中央": 0.2% of the
tracked pieces after 50 MiB of news and reviews, 1.7% when the same text repeats for
300 MiB) lives in an overflow dict, slot -> str, costed at its UTF-8 length plus
``OVERFLOW_OVERHEAD``; 320,000 pieces of the repeated stream needed 1.2 MB of the
1.9 MB the default capacity allows. A long piece that does not fit is not tracked
(``long_dropped`` counts them): pieces that long are sentences repeated verbatim, not
words.

Complexity: ``texts`` decodes n slots in one call, O(n * TEXT_BYTES) numpy work plus
one ``bytes.decode`` (the rescore reads its candidates' texts this way); ``store`` and
``forget`` are O(n) for n slots plus a dict operation per long text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamer.core.rows import decode_rows, fill_rows, pack_rows, resident, unpack_rows

#: UTF-8 bytes of a text stored inline (16 Han characters, 48 ASCII letters)
TEXT_BYTES = 48
#: the overflow dict of long texts holds at most this many bytes a slot in all
OVERFLOW_BYTES_PER_SLOT = 8
#: bytes a long text is costed at beyond its UTF-8 length (str object, dict entry)
OVERFLOW_OVERHEAD = 160
_LONG = 255  # text_len of a slot whose text is in the overflow dict


class TextStore:
    """The text of each of ``capacity`` slots (see module docstring)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.text_bytes = resident((capacity, TEXT_BYTES), np.uint8)
        self.text_len = resident(capacity, np.uint8)
        self.overflow: dict[int, str] = {}
        self._overflow_cost = 0
        self.long_dropped = 0

    @property
    def overflow_limit(self) -> int:
        """Bytes the overflow dict of long texts may hold (see module docstring)."""
        return OVERFLOW_BYTES_PER_SLOT * self.capacity

    @property
    def nbytes(self) -> int:
        return int(self.text_bytes.nbytes + self.text_len.nbytes) + self._overflow_cost

    def text_of(self, slot: int) -> str:
        """The text of a tracked slot ("" for a free one)."""
        n = int(self.text_len[slot])
        if n == _LONG:
            return self.overflow[int(slot)]
        return bytes(self.text_bytes[slot, :n]).decode("utf-8", "surrogatepass")

    def texts(self, slots: np.ndarray) -> list[str]:
        """The texts of many slots, decoded in one call."""
        slots = np.asarray(slots, dtype=np.int64)
        lens = self.text_len[slots]
        long = lens == _LONG
        out = decode_rows(self.text_bytes[slots], np.where(long, 0, lens))
        for i in np.flatnonzero(long).tolist():
            out[i] = self.overflow[int(slots[i])]
        return out

    def room_for(self, data: list[bytes]) -> np.ndarray:
        """Whether each UTF-8 text can be stored: short ones always, long ones while the
        overflow has room for them all (those that do not fit count in ``long_dropped``)."""
        ok = np.ones(len(data), dtype=bool)
        room = self.overflow_limit - self._overflow_cost
        for i, d in enumerate(data):
            if len(d) > TEXT_BYTES:
                cost = len(d) + OVERFLOW_OVERHEAD
                if cost > room:
                    ok[i] = False
                    self.long_dropped += 1
                else:
                    room -= cost
        return ok

    def store(self, slots: np.ndarray, data: list[bytes]) -> None:
        """Write UTF-8 texts of freshly taken slots (long ones go to the overflow)."""
        lens = np.fromiter(map(len, data), np.int64, len(data))
        short = lens <= TEXT_BYTES
        self.text_bytes[slots] = 0
        for i in np.flatnonzero(~short).tolist():
            slot = int(slots[i])
            self.overflow[slot] = data[i].decode("utf-8", "surrogatepass")
            self._overflow_cost += len(data[i]) + OVERFLOW_OVERHEAD
        self.text_len[slots] = np.where(short, lens, _LONG)
        ss, sl = slots[short], lens[short]
        if len(ss) == 0:
            return
        fill_rows(self.text_bytes, ss,
                  [d for d, s in zip(data, short.tolist(), strict=True) if s], sl)

    def forget(self, slots: np.ndarray) -> None:
        """Clear the slots' texts, giving their overflow bytes back."""
        long = slots[self.text_len[slots] == _LONG]
        for s in long.tolist():
            t = self.overflow.pop(s)
            self._overflow_cost -= len(t.encode("utf-8", "surrogatepass")) + OVERFLOW_OVERHEAD
        self.text_bytes[slots] = 0
        self.text_len[slots] = 0

    def _inline_lengths(self) -> np.ndarray:
        return np.where(self.text_len == _LONG, 0, self.text_len)

    def state(self) -> dict[str, Any]:
        """The table state's ``text``, ``overflow`` and ``long_dropped`` entries: rows
        packed without their padding, the long texts as one byte array with lengths."""
        long = sorted(self.overflow)
        data = [self.overflow[s].encode("utf-8", "surrogatepass") for s in long]
        return {
            "text": {"lengths": self.text_len,
                     "bytes": pack_rows(self.text_bytes, self._inline_lengths())},
            "overflow": {"slots": np.array(long, dtype=np.int64),
                         "lengths": np.fromiter(map(len, data), np.int64, len(data)),
                         "bytes": np.frombuffer(b"".join(data), np.uint8).copy()},
            "long_dropped": self.long_dropped,
        }

    def load(self, st: dict[str, Any]) -> None:
        """Fill a new store from a table state (the entries ``state`` writes)."""
        self.text_len[:] = np.asarray(st["text"]["lengths"], np.uint8)
        unpack_rows(st["text"]["bytes"], self._inline_lengths(), self.text_bytes)
        over = st["overflow"]
        raw = np.asarray(over["bytes"], np.uint8).tobytes()
        ends = np.cumsum(np.asarray(over["lengths"], np.int64)).tolist()
        for s, a, b in zip(np.asarray(over["slots"]).tolist(), [0, *ends][:len(ends)], ends,
                           strict=True):
            self.overflow[int(s)] = raw[a:b].decode("utf-8", "surrogatepass")
            self._overflow_cost += b - a + OVERFLOW_OVERHEAD
        if set(self.overflow) != set(np.flatnonzero(self.text_len == _LONG).tolist()):
            raise ValueError("candidate overflow texts disagree with their slots")
        self.long_dropped = int(st.get("long_dropped", 0))
