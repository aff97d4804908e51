"""Prompt text -> text-encoder embeddings built the way AUTOMATIC1111 builds them (SD 1.x / 2.x, SDXL).

- Attention weights (syntax in prompt_weights.py): every token's embedding is multiplied by its
  weight, then the chunk is rescaled so that its mean is what it was before weighting (A1111's
  default "Original" emphasis).
- Long prompts: tokens go in chunks of 75; a chunk that fills up breaks after its last comma when
  that comma is at most 20 tokens back, and BREAK starts a new chunk. Each chunk is encoded as its
  own 77-token sequence (start, 75 tokens, end, padding) and the chunks' embeddings are
  concatenated, so nothing is truncated. A shorter embedding (the negative prompt, a blend
  partner, another render's frame in a batch) is padded with the empty prompt's embedding.
- SDXL: both text encoders see the same chunks and give their penultimate hidden states (as
  diffusers' encode_prompt), joined per token; the pooled embedding is the second encoder's for
  the first chunk, unweighted, as in A1111.

Written here rather than with compel: compel 2.5.1 installs and runs with diffusers 0.42 and
transformers 5, but its weighting is not A1111's. It scales each weighted token's offset from the
empty prompt's embedding, and it down-weights by blending towards the prompt with the words
masked out, so a prompt tuned in A1111 or Deforum (`(masterpiece:1.2)`, `[blurry]`) would render
differently. It does not read A1111's syntax or BREAK either, so the parser here is needed anyway;
what is left, chunking and weighting, is the short code below.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import torch

from deforum_engine.errors import RenderError
from deforum_engine.prompts.weights import Fragment, parse_attention

COMMA_BACKTRACK = 20  # a full chunk breaks after a comma at most this many tokens back (A1111's default)


@dataclass(frozen=True)
class TextEmbedding:
    """One text's embedding: 1 x (77 * chunks) x width, and SDXL's pooled 1 x width (else None)."""

    tokens: torch.Tensor
    pooled: torch.Tensor | None


class PromptEncoder:
    """Weighted, chunked embeddings from a pipeline's tokenizers and text encoders."""

    def __init__(self, pipe: Any):
        pairs = ((pipe.tokenizer, pipe.text_encoder),
                 (getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None)))
        self.encoders = [(tokenizer, encoder) for tokenizer, encoder in pairs if encoder is not None]
        self.penultimate = hasattr(pipe, "text_encoder_2")  # SDXL reads hidden_states[-2]
        tokenizer = self.encoders[0][0]
        self.chunk_length = tokenizer.model_max_length - 2

    def fits_one_chunk(self, text: str) -> bool:
        """True when the text's tokens fit one 77-token sequence (what diffusers' encode_prompt takes)."""
        tokenizer = self.encoders[0][0]
        return len(tokenizer(text, add_special_tokens=False, verbose=False).input_ids) <= self.chunk_length

    def encode(self, text: str) -> TextEmbedding:
        """The text's weighted embedding, chunk by chunk, for every text encoder of the pipeline."""
        sections = parse_attention(text)
        per_encoder, pooled = [], None
        for tokenizer, encoder in self.encoders:
            ids, weights = self.chunk_ids(tokenizer, sections)
            hidden, first_pooled = self._run(encoder, ids)
            per_encoder.append(emphasize(hidden, weights.to(hidden.device)))
            if pooled is None and first_pooled is not None:
                pooled = first_pooled[:1]
        if len({part.shape[0] for part in per_encoder}) > 1:
            raise RenderError(f"prompt {text[:60]!r}: the text encoders' tokenizers split it into different chunks")
        tokens = torch.cat(per_encoder, dim=-1)
        return TextEmbedding(tokens.reshape(1, -1, tokens.shape[-1]), pooled)

    def chunk_ids(self, tokenizer: Any, sections: list[list[Fragment]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and weights, chunks x 77: start, up to 75 tokens, end, padding."""
        texts = [text for section in sections for text, _ in section]
        token_lists = iter(tokenizer(texts, add_special_tokens=False, verbose=False).input_ids)
        stream: list[tuple[int | None, float]] = []  # None: BREAK
        for number, section in enumerate(sections):
            if number:
                stream.append((None, 1.0))
            for _, weight in section:
                stream.extend((token, weight) for token in next(token_lists))
        comma = tokenizer.get_vocab().get(",</w>")
        rows, weights = [], []
        for chunk in split_chunks(stream, self.chunk_length, comma):
            padding = self.chunk_length - len(chunk)
            rows.append([tokenizer.bos_token_id, *(token for token, _ in chunk), tokenizer.eos_token_id]
                        + [tokenizer.pad_token_id] * padding)
            weights.append([1.0, *(weight for _, weight in chunk), 1.0] + [1.0] * padding)
        return torch.tensor(rows, dtype=torch.long), torch.tensor(weights, dtype=torch.float32)

    def _run(self, encoder: Any, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hidden states (chunks x 77 x width) and, for a projection encoder, the pooled embedding."""
        with torch.no_grad():
            if not self.penultimate:
                return encoder(ids.to(encoder.device))[0], None
            output = encoder(ids.to(encoder.device), output_hidden_states=True)
            return output.hidden_states[-2], output[0] if output[0].ndim == 2 else None

    @cached_property
    def empty(self) -> torch.Tensor:
        """The empty prompt's 77-token embedding, used to pad shorter embeddings."""
        return self.encode("").tokens

    def pad(self, tokens: torch.Tensor, length: int) -> torch.Tensor:
        """`tokens` (batch x n x width) lengthened to `length` tokens with empty-prompt chunks."""
        missing = length - tokens.shape[1]
        if missing <= 0:
            return tokens
        empty = self.empty.to(device=tokens.device, dtype=tokens.dtype)
        return torch.cat([tokens, empty.repeat(tokens.shape[0], missing // empty.shape[1], 1)], dim=1)


def split_chunks(stream: Sequence[tuple[int | None, float]], length: int, comma: int | None) -> list[list]:
    """(token, weight) pairs -> chunks of at most `length`; a None token (BREAK) closes the chunk."""
    chunks, current, last_comma = [], [], -1
    for token, weight in stream:
        if token is None:
            chunks.append(current)
            current, last_comma = [], -1
            continue
        if len(current) == length:
            backtrack = token != comma and last_comma >= 0 and length - last_comma <= COMMA_BACKTRACK
            cut = last_comma + 1 if backtrack else length
            chunks.append(current[:cut])
            current, last_comma = current[cut:], -1
        if token == comma:
            last_comma = len(current)
        current.append((token, weight))
    chunks.append(current)
    return chunks


def emphasize(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111's emphasis: scale each token by its weight, then restore each chunk's mean."""
    if bool((weights == 1).all()):
        return hidden
    values = hidden.float()
    before = values.mean(dim=(1, 2), keepdim=True)
    values = values * weights[..., None]
    after = values.mean(dim=(1, 2), keepdim=True)
    values = values * torch.where(after == 0, 1.0, before / after)
    return values.to(hidden.dtype)


def compose(negative: TextEmbedding, parts: list[tuple[TextEmbedding, float]],
            encoder: PromptEncoder) -> tuple[TextEmbedding, TextEmbedding]:
    """A1111's composable weights on embeddings: negative + sum of weight * (part - negative).

    Written (1 - sum of weights) * negative + sum of weight * part, so that weights summing to 1
    are a plain weighted average (one part at weight 1 is that part, exactly). Returns the positive
    and the negative embedding, padded to one length.
    """
    length = max(embedding.tokens.shape[1] for embedding in [negative, *(part for part, _ in parts)])
    negative_tokens = encoder.pad(negative.tokens, length)
    total = sum(weight for _, weight in parts)
    tokens = (1.0 - total) * negative_tokens
    pooled = None if negative.pooled is None else (1.0 - total) * negative.pooled
    for part, weight in parts:
        tokens = tokens + weight * encoder.pad(part.tokens, length)
        if pooled is not None:
            pooled = pooled + weight * part.pooled
    return TextEmbedding(tokens, pooled), TextEmbedding(negative_tokens, negative.pooled)
