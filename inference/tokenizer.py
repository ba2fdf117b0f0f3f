"""The SentencePiece tokenizer stored in the file's own ``tokenizer`` blob (spec §7)."""
from __future__ import annotations

import os

BOS_ID = 2  # gemma/tokenizer.h


class Tokenizer:
    """Wraps ``sentencepiece`` loaded from the serialized ModelProto in memory (no temp file)."""

    def __init__(self, model_proto: bytes) -> None:
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def from_sbs(cls, f) -> "Tokenizer":
        """From an opened :class:`sbs_tools.SbsFile`; a clear error if the blob is absent or the mock."""
        from sbs_tools.errors import SbsError

        data = f.tokenizer_bytes
        if data is None:
            raise SbsError(f"{f.path}: no tokenizer in the file (blob 'tokenizer' absent or 'unavailable'); "
                           "pass token ids with --tokens", code="no-tokenizer")
        try:
            return cls(data)
        except Exception as e:  # sentencepiece raises RuntimeError on a bad proto
            raise SbsError(f"{f.path}: the tokenizer blob is not a SentencePiece model ({e})",
                           code="bad-tokenizer") from None

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str, bos: bool = True) -> list[int]:
        ids = self.sp.encode(text, out_type=int)
        return [BOS_ID] + ids if bos else ids

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([int(i) for i in ids])


class StreamDecoder:
    """Turns a growing list of ids into text increments, holding back incomplete UTF-8 byte pieces.

    Decoding continues from ``context`` (the prompt ids) so that a generated word's leading space,
    which SentencePiece drops at the start of a text, is kept.
    """

    def __init__(self, tokenizer: Tokenizer, context: list[int] = ()) -> None:
        self.tok = tokenizer
        self.ids: list[int] = list(context)
        self.emitted = tokenizer.decode(self.ids)

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd"):  # a multi-byte character split over byte-fallback pieces
            return ""
        # Text already printed cannot be taken back; continue after the longest common prefix.
        common = len(os.path.commonprefix([self.emitted, text]))
        new, self.emitted = text[common:], text
        return new
