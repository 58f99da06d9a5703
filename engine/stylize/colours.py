"""What the optimizer changes: the SH colours, parametrized (stroke cells, masks) and kept displayable.

    colours = ColourParams(scene, config, mask)     # scene on the job's device
    sh = colours.current_sh()                       # [N, K, 3] differentiable, what the renders use
    colours.optimizer.step(); colours.project()     # Adam step, then back into the displayable range
    colours.final_sh()                              # [N, K, 3] detached, the result's SH

Parametrizations:
    per Gaussian   DC [N, 1, 3] free (stroke_size = 0)
    stroke cells   DC = stroke colour [cell of g] + residual [g] (strokes.py): strokes look the same from
                   every view because a whole elongated cell of Gaussians shares one colour
Higher SH bands: zeroed at the start (zero_rest) and optionally optimized (lr_rest > 0).

Mask (partial stylization): `mask` [N] in [0, 1]; Gaussians with 0 keep their SH bit-identical, 1 take the
optimized colour, values between blend (a soft edge): sh = orig + m (free - orig).

Displayable colours (config.displayable): the DC colour C0 * dc + 0.5 of every splat stays in [0, 1]
(viewers and Blender clip per splat; our renderer does not). The start is projected into the range and
every step is followed by a projection (projected Adam). `range_report()` counts splats out of range.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..render.sh import C0 as SH_C0
from ..scene.gaussians import GaussianScene
from .config import StylizeConfig

DC_LO, DC_HI = -0.5 / SH_C0, 0.5 / SH_C0  # C0 * dc + 0.5 in [0, 1]


def out_of_range(sh: Tensor, tol: float = 1e-6) -> int:
    """Splats whose DC colour C0 * dc + 0.5 leaves [0, 1] in any channel (by more than `tol`)."""
    rgb = SH_C0 * sh[:, 0].detach() + 0.5  # [N, 3]
    return int(((rgb < -tol) | (rgb > 1 + tol)).any(dim=1).sum())


class ColourParams:
    def __init__(self, scene: GaussianScene, config: StylizeConfig, mask: Tensor | None = None):
        self.config = config
        sh0 = scene.sh.detach()  # [N, K, 3]
        self.sh0 = sh0
        self.mask = None if mask is None else mask.to(sh0.device, sh0.dtype).reshape(-1, 1, 1)  # [N, 1, 1]
        rest = sh0[:, 1:].clone()  # [N, K-1, 3]
        if config.zero_rest:
            rest.zero_()
        start_dc = sh0[:, :1]
        if config.displayable:
            start_dc = start_dc.clamp(DC_LO, DC_HI)
        self.params: dict[str, Tensor] = {}
        groups: list[dict[str, Any]] = []
        if config.stroke_size > 0:
            from .strokes import mean_per_stroke, stroke_assignment, stroke_count

            self.assign = stroke_assignment(scene, config.stroke_size, config.stroke_aspect, config.seed)
            k = stroke_count(self.assign)
            stroke_dc = mean_per_stroke(start_dc[:, 0], self.assign, k)[:, None].clone()  # [K, 1, 3]
            residual = (start_dc - stroke_dc[self.assign]).clone()  # [N, 1, 3]
            self.params = {"stroke_dc": stroke_dc.requires_grad_(True), "residual_dc": residual}
            residual.requires_grad_(True)
            groups = [
                {"params": [stroke_dc], "lr": config.lr, "name": "stroke_dc"},
                {"params": [residual], "lr": config.lr * config.residual_lr_scale, "name": "residual_dc"},
            ]
        else:
            dc = start_dc.clone().requires_grad_(True)  # [N, 1, 3]
            self.params = {"sh_dc": dc}
            groups = [{"params": [dc], "lr": config.lr, "name": "sh_dc"}]
        if rest.shape[1] > 0 and config.lr_rest > 0:
            rest.requires_grad_(True)
            groups.append({"params": [rest], "lr": config.lr_rest, "name": "sh_rest"})
        self.rest = rest
        self.optimizer = torch.optim.Adam(groups)
        self.rest_active = rest.shape[1] > 0 and (rest.requires_grad or bool(rest.abs().max() > 0))
        self.start_out_of_range = out_of_range(sh0)
        self.finish_map = None  # free DC [N, 1, 3] -> DC, set by the palette finish (palette.py)

    # ------------------------------------------------------------------------------------------ colours
    def free_dc(self) -> Tensor:  # [N, 1, 3] the optimized DC before the mask
        if "stroke_dc" in self.params:
            return self.params["stroke_dc"].index_select(0, self.assign) + self.params["residual_dc"]
        return self.params["sh_dc"]

    def _masked(self, new: Tensor, orig: Tensor) -> Tensor:
        if self.mask is None:
            return new
        m = self.mask
        return torch.where(m >= 1, new, torch.where(m <= 0, orig, orig + m * (new - orig)))

    def dc(self) -> Tensor:  # [N, 1, 3]
        return self._masked(self.free_dc(), self.sh0[:, :1])

    def rest_bands(self) -> Tensor:  # [N, K-1, 3]
        return self._masked(self.rest, self.sh0[:, 1:]) if self.mask is not None else self.rest

    def _with_bands(self, dc: Tensor, all_bands: bool = False, rest_grad: bool = True) -> Tensor:
        """[N, K, 3] dc with the higher bands; the DC alone while those are all zero (and no mask keeps them)
        unless `all_bands`."""
        if all_bands or self.rest_active or (self.mask is not None and self.rest.shape[1] > 0):
            rest = self.rest_bands()
            return torch.cat([dc, rest if rest_grad else rest.detach()], dim=1)
        return dc

    def current_sh(self) -> Tensor:
        """[N, K, 3]; the DC alone while the higher bands are all zero (and no mask keeps them)."""
        return self._with_bands(self.dc())

    def full_sh(self) -> Tensor:  # [N, K, 3] always every band (for the full renderer)
        return self._with_bands(self.dc(), all_bands=True)

    def sh_from_free(self, free: Tensor, all_bands: bool = False) -> Tensor:
        """The SH of the scene when the optimized DC is `free` [N, 1, 3] (differentiable in `free` only):
        clipped into range with `displayable`, masked, and with the higher bands as in `current_sh` (all of
        them with `all_bands`)."""
        if self.config.displayable:
            free = free.clamp(DC_LO, DC_HI)
        return self._with_bands(self._masked(free, self.sh0[:, :1]), all_bands, rest_grad=False)

    def final_sh(self) -> Tensor:
        """[N, K, 3] detached result; with `displayable` the optimized DC is clipped exactly into range;
        the palette finish's map (when one was set) is applied first."""
        with torch.no_grad():
            free = self.free_dc()
            if self.finish_map is not None:
                free = self.finish_map(free)
            return self.sh_from_free(free, all_bands=True).detach()

    # ------------------------------------------------------------------------------------------ steps
    @torch.no_grad()
    def project(self) -> None:
        """Back into the displayable range after an optimizer step (no-op unless config.displayable)."""
        if not self.config.displayable:
            return
        if "stroke_dc" in self.params:
            stroke, residual = self.params["stroke_dc"], self.params["residual_dc"]
            stroke.clamp_(DC_LO, DC_HI)
            base = stroke.index_select(0, self.assign)
            residual.copy_((base + residual).clamp_(DC_LO, DC_HI) - base)
        else:
            self.params["sh_dc"].clamp_(DC_LO, DC_HI)

    def range_report(self) -> dict[str, int]:
        final = self.final_sh()
        return {
            "splats": int(final.shape[0]),
            "out_of_range_start": self.start_out_of_range,
            "out_of_range_end": out_of_range(final),
        }

    # ------------------------------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        return {
            "params": {name: t.detach().cpu().clone() for name, t in self.params.items()},
            "sh_rest": self.rest.detach().cpu().clone(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for name, tensor in self.params.items():
                tensor.copy_(state["params"][name].to(tensor.device))
            self.rest.copy_(state["sh_rest"].to(self.rest.device))
        self.optimizer.load_state_dict(state["optimizer"])
