"""Preflight check of the loaded model: LoRA adapters sit where the method asked.

It reads the loaded model through medft.modeling.families, so it works on native and on
remote-code checkpoints alike; medft.text.audit runs it with the label checks before step 0.
"""

from __future__ import annotations

from medft.config import LoraTarget
from medft.modeling import families
from medft.text.audit import AuditReport


def check_lora_coverage(report: AuditReport, model, model_cfg, method_cfg) -> None:
    """Adapters must sit on every block role the method asked for (attention and/or MLP),
    as the loaded model names them (medft.modeling.families)."""
    lora = getattr(method_cfg, "lora", None)
    if lora is None:
        report.passed("lora_coverage", "no adapters (method trains base weights)")
        return
    family = families.describe(model)
    wrapped = [name.rsplit(".", 1)[-1] for name, module in model.named_modules() if hasattr(module, "lora_A")]
    by_role = {role: wrapped.count(leaf) for role, leaf in family.role_names.items()}
    groups = {"attention": families.ATTENTION_ROLES, "mlp": families.MLP_ROLES}
    counts = {g: sum(by_role.get(r, 0) for r in roles) for g, roles in groups.items()}
    report.stats["lora_modules"] = {**counts, "by_role": by_role}
    if lora.target_modules:
        missing = sorted(set(lora.target_modules) - set(wrapped))
        if missing:
            report.fail("lora_coverage", f"LoRA targets {', '.join(missing)} matched no module")
        report.passed("lora_coverage", f"{len(wrapped)} modules: {', '.join(sorted(set(wrapped)))}")
        return
    target = LoraTarget(lora.target)
    for role in families.roles_for_target(target.value):
        expected = family.num_blocks
        if by_role.get(role, 0) != expected:
            name = family.role_names.get(role, "?")
            report.fail(
                "lora_coverage",
                f"LoRA adapters cover {by_role.get(role, 0)} of {expected} {role} "
                f"projections ({name}); method.lora.target={target.value} asks for all of them",
            )
    report.passed("lora_coverage", ", ".join(f"{r}: {n}" for r, n in by_role.items() if n))
