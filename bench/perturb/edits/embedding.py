"""``embedding``: the paper's edit of the grounded model's shared embedding e, so that its own detector reads the
target attribute (`bench.perturb.embedding_attack`): one FGSM step (the reference, lr = eps) or Adam kept within the
L-inf budget eps. Only models with a shared embedding offer it (capability "embedding")."""

from __future__ import annotations

from ...registry import EDITS
from . import Edit, EditContext, EditJob, EditOutcome


@EDITS.register("embedding")
class EmbeddingEdit(Edit):
    name = "embedding"
    spaces = ("embedding",)

    def run(self, context: EditContext, jobs: list[EditJob]) -> list[EditOutcome]:
        from ..embedding_attack import attack

        return attack(context.adapter, jobs)
