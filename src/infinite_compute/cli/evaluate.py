"""Commands of rules/evaluate.smk: a model's validation log-probs and its benchmark requests' scores."""

from __future__ import annotations

from ..data.tokens import evaluation_sequences
from ..model import scoring
from .records import read_spec, write_eval


def cmd_evaluate(a) -> None:
    spec = read_spec(a.spec)
    seqs = evaluation_sequences(a.validation, spec.model.seq_len)
    pairs, bseqs, bmask = scoring.encoded_request_file(a.requests, a.tokenizer, spec.model.seq_len)
    with scoring.device_mesh():
        model = scoring.load_model(a.hf, spec, a.tokenizer)
        val = scoring.token_logprobs(model, seqs, a.batch_size)
        bench = scoring.score_requests(model, bseqs, bmask, a.batch_size)
    write_eval(a.out_eval, a.out_logprobs, spec.run_id, val, bench, benchmark_requests=len(pairs))
