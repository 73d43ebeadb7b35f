"""Build TRL's SFTTrainer from the composed config.

medft tokenizes and masks conversations itself (see ``medft.text.labels``) and hands TRL a
dataset with ``input_ids`` and ``labels``; TRL then does batching, padding and the
loss. SFTConfig's own defaults turn bf16 and gradient checkpointing on even on CPU,
where both slow training down, so every such switch comes from the run's
``medft.config.resolve.Resolved`` instead.
"""

from __future__ import annotations

import functools
from pathlib import Path

from medft.config.resolve import Resolved
from medft.runs.rundir import RunDir
from medft.runtime.devices import liger_available

__all__ = ["build_trainer", "liger_available", "sft_config", "use_one_device_per_process"]


def _save_steps(t, save_strategy: str) -> int:
    if t.load_best_model_at_end and save_strategy == "steps" and t.eval_steps > 0:
        return t.eval_steps  # best-model selection needs a checkpoint at every evaluation
    if t.save_steps > 0:
        return t.save_steps
    return t.eval_steps if (save_strategy == "steps" and t.eval_steps > 0) else 500


def sft_config(cfg, run_dir: Path, resolved: Resolved, report_to: list[str], has_eval: bool):
    """TRL's SFTConfig for ``cfg``, with every auto switch as ``resolved`` decided it."""
    from trl import SFTConfig

    t = cfg.train
    eval_strategy = "no"
    if has_eval:
        eval_strategy = "steps" if t.eval_steps > 0 else "epoch"
    save_strategy = "steps" if t.save_steps > 0 else t.save_strategy
    if t.load_best_model_at_end and has_eval:
        save_strategy = eval_strategy
    gc = resolved.gradient_checkpointing
    return SFTConfig(
        output_dir=str(RunDir(run_dir).checkpoints),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        # transformers 5 reads a float in [0, 1) as a fraction of all steps.
        warmup_steps=t.warmup_steps if t.warmup_steps > 0 else float(t.warmup_ratio),
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optim,
        bf16=resolved.bf16,
        fp16=resolved.fp16,
        tf32=resolved.tf32 or None,
        use_liger_kernel=resolved.liger,
        train_sampling_strategy="group_by_length" if resolved.group_by_length else "random",
        gradient_checkpointing=gc,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gc else None,
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy=eval_strategy,
        eval_steps=t.eval_steps if t.eval_steps > 0 else None,
        save_strategy=save_strategy,
        save_steps=_save_steps(t, save_strategy),
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=bool(t.load_best_model_at_end and has_eval),
        metric_for_best_model="eval_loss" if t.load_best_model_at_end else None,
        greater_is_better=False if t.load_best_model_at_end else None,
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=resolved.device == "cpu" or t.use_cpu,
        # Several workers (medft.training.distributed): gloo is the backend that runs on CPU. Every
        # trainable parameter takes part in every step, so DDP need not search for unused ones.
        ddp_backend="gloo" if resolved.device == "cpu" and resolved.world_size > 1 else None,
        ddp_find_unused_parameters=False,
        dataloader_num_workers=t.dataloader_num_workers,
        report_to=report_to,
        run_name=None,
        # Rows arrive tokenized, labelled and fitted to max_length by medft.text.labels, so TRL's
        # own preparation (tokenize, label, truncate, filter) has nothing left to do.
        dataset_kwargs={"skip_prepare_dataset": True},
        max_length=t.max_length,
        # Rows are packed by medft.training.packing before they reach TRL. With flash attention TRL's
        # padding-free collator flattens them for the varlen kernel; otherwise medft's
        # row-packed collator is passed in (see medft.training.packing.RowPackedCollator).
        packing=resolved.flatten_packs,
        packing_strategy="bfd",
        assistant_only_loss=False,
        completion_only_loss=None,
        dataset_num_proc=None,
        # QLoRA keeps the base frozen in 4 bit; the adapters train in the compute dtype.
        model_init_kwargs=None,
        disable_tqdm=False,
    )


@functools.cache
def _trainer_class():
    """SFTTrainer with two changes the library has no switch for.

    Loss: with ``fused_loss = False`` TRL's ``compute_loss`` (which always runs its fused LM
    head and the per-step entropy/accuracy metrics) is replaced by the model's own forward
    with the LM head fed only the supervised positions (``medft.training.supervised_head``) and
    transformers' causal-LM cross-entropy on those, installed as ``compute_loss_func``.
    Trainer then counts the supervised tokens of the whole accumulated batch and the loss
    divides by them, whether or not the model takes ``num_items_in_batch`` itself. On that
    path a right-padded batch also goes without its redundant padding mask
    (``medft.training.causal_mask``); TRL's path counts its tokens from the mask, so it keeps it.

    Validation loss: the summed NLL of every supervised token over their number, on every
    rank and at any eval batch size (``medft.training.eval_loss`` says why the library's is not).

    Length-grouped order: transformers' ``LengthGroupedSampler`` draws its permutation from
    the global torch RNG, so a resumed run (whose RNG state comes from the checkpoint) would
    see the rows in another order than the run it continues. Here it is seeded by
    (data seed, epoch) instead, like accelerate's seedable random sampler.
    """
    import torch
    import transformers
    from transformers.trainer_pt_utils import LengthGroupedSampler
    from trl import SFTTrainer

    from medft.training import causal_mask, eval_loss, supervised_head

    class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
        def __init__(self, batch_size: int, lengths: list[int], seed: int):
            super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
            self.seed = seed
            self.set_epoch(0)

        def set_epoch(self, epoch: int) -> None:
            self.generator.manual_seed(self.seed + epoch)

    class MedftSFTTrainer(SFTTrainer):
        fused_loss = True

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.fused_loss:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            unwrapped = self.accelerator.unwrap_model(model)
            inputs = causal_mask.without_redundant_padding_mask(inputs, causal_mask.causal_only_attention(unwrapped))
            with supervised_head.project_supervised_only(unwrapped.get_output_embeddings(), inputs["labels"]):
                return transformers.Trainer.compute_loss(
                    self, model, {**inputs, "use_cache": False}, return_outputs, num_items_in_batch
                )

        def evaluation_loop(self, *args, metric_key_prefix: str = "eval", **kwargs):
            self._token_totals = totals = eval_loss.TokenTotals()
            try:
                output = super().evaluation_loop(*args, metric_key_prefix=metric_key_prefix, **kwargs)
            finally:
                self._token_totals = None
            mean = totals.mean()
            if mean is not None:
                output.metrics[f"{metric_key_prefix}_loss"] = mean
            return output

        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
            totals = getattr(self, "_token_totals", None)
            if not prediction_loss_only or totals is None:  # logits wanted (compute_metrics): the library's step
                return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
            inputs = self._prepare_inputs(inputs)
            unwrapped = self.accelerator.unwrap_model(model)
            with torch.no_grad(), self.compute_loss_context_manager(), eval_loss.captured_output(unwrapped) as seen:
                loss = self.compute_loss(model, inputs)
            nll, mask = eval_loss.token_nll(seen.output, inputs["labels"])
            totals.add(*self.gather_function(eval_loss.per_sequence(nll, mask, inputs)))
            return loss.detach(), None, None

        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is LengthGroupedSampler:
                seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
                return EpochSeededLengthGroupedSampler(sampler.batch_size, sampler.lengths, seed)
            return sampler

    return MedftSFTTrainer


def use_one_device_per_process(args) -> None:
    """Never nn.DataParallel: a single process that sees several GPUs would be wrapped in it
    by the Trainer (n_gpu = visible GPUs), silently multiplying the batch and the loss
    bookkeeping. medft's way to use several GPUs is one worker per GPU
    (launcher.nproc_per_node), which the pipeline's warning names."""
    args.device  # noqa: B018  (sets the device count first, so the value below is not overwritten)
    if getattr(args, "_n_gpu", 1) > 1:
        args._n_gpu = 1


def build_trainer(
    model, tokenizer, args, train_dataset, eval_dataset, callbacks=(), data_collator=None, fused_loss: bool = True
):
    use_one_device_per_process(args)  # before the Trainer sizes its batches by n_gpu
    trainer = _trainer_class()(
        model=model,
        args=args,
        data_collator=data_collator,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer.fused_loss = fused_loss
    from medft.runtime.console import quiet_trainer_progress

    quiet_trainer_progress(trainer)  # one bar, losses in its postfix (-v: the Trainer's own output)
    # TRL casts QLoRA adapters to bfloat16 (trainer construction); medft trains them in float32.
    from medft.modeling.methods import keep_float32_masters

    keep_float32_masters(model)
    if not fused_loss:
        from medft.training.supervised_head import supervised_cross_entropy

        trainer.compute_loss_func = supervised_cross_entropy
    return trainer
