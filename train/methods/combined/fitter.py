"""Fit a combined run from scratch (`python -m train --method combined`): every head with its own method's fitter
on the shared backbone, then the heads' map statistics on the same good images. Statistics on images the heads
were fitted on are biased low (a memory bank contains their patches); `python -m train.combine` builds the run
from fitted runs and standardises on their held-out good images instead."""
from __future__ import annotations

from typing import Any, Dict

from train.methods.combined.model import CombinedModel, fit_statistics
from train.methods.run import Fitter


class CombinedFitter(Fitter):
    def fit(self, model: CombinedModel, batches, device, progress: bool) -> Dict[str, Any]:
        from train.methods import get_method

        facts = []
        for index, member in enumerate(self.options["members"]):
            spec = get_method(member["method"])
            fitter = spec.start_run(member["options"], self.image_size)
            facts.append({"method": member["method"], **fitter.fit(model.member_view(index), batches, device,
                                                                   progress)})
        return {"heads": facts}

    def after_training(self, model: CombinedModel, batches, device, progress: bool) -> Dict[str, Any]:
        return {"statistics_images": fit_statistics(model, batches, device, progress), "statistics_from": "fit"}
