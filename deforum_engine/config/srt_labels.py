"""Deforum's gen-info .srt vocabulary: its labels, in its order, and the defaults of the schedules it
reports that the engine has no setting for. The settings check labels against it; post/srt.py writes
the file.
"""
from __future__ import annotations

# (schedule, Deforum's user label, the label printed in the .srt), in Deforum's order.
GEN_INFO_PARAMS = (
    ("angle", "Angle", "Angle"),
    ("transform_center_x", "Trans Center X", "Tr.C.X"),
    ("transform_center_y", "Trans Center Y", "Tr.C.Y"),
    ("zoom", "Zoom", "Zoom"),
    ("translation_x", "Trans X", "TrX"),
    ("translation_y", "Trans Y", "TrY"),
    ("translation_z", "Trans Z", "TrZ"),
    ("rotation_3d_x", "Rot 3D X", "RotX"),
    ("rotation_3d_y", "Rot 3D Y", "RotY"),
    ("rotation_3d_z", "Rot 3D Z", "RotZ"),
    ("perspective_flip_theta", "Per Fl Theta", "PerFlT"),
    ("perspective_flip_phi", "Per Fl Phi", "PerFlP"),
    ("perspective_flip_gamma", "Per Fl Gamma", "PerFlG"),
    ("perspective_flip_fv", "Per Fl FV", "PerFlFV"),
    ("noise_schedule", "Noise Sch", "Noise"),
    ("strength_schedule", "Str Sch", "StrSch"),
    ("contrast_schedule", "Contrast Sch", "CtrstSch"),
    ("cfg_scale_schedule", "CFG Sch", "CFGSch"),
    ("pix2pix_img_cfg_scale_schedule", "P2P Img CFG Sch", "P2PCfgSch"),
    ("subseed_schedule", "Subseed Sch", "SubSSch"),
    ("subseed_strength_schedule", "Subseed Str Sch", "SubSStrSch"),
    ("checkpoint_schedule", "Ckpt Sch", "CkptSch"),
    ("steps_schedule", "Steps Sch", "StepsSch"),
    ("seed_schedule", "Seed Sch", "SeedSch"),
    ("sampler_schedule", "Sampler Sch", "SamplerSchedule"),
    ("clipskip_schedule", "Clipskip Sch", "ClipskipSchedule"),
    ("noise_multiplier_schedule", "Noise Multp Sch", "NoiseMultiplierSchedule"),
    ("mask_schedule", "Mask Sch", "MaskSchedule"),
    ("noise_mask_schedule", "Noise Mask Sch", "NoiseMaskSchedule"),
    ("amount_schedule", "Ant.Blr Amount Sch", "AmountSchedule"),
    ("kernel_schedule", "Ant.Blr Kernel Sch", "KernelSchedule"),
    ("sigma_schedule", "Ant.Blr Sigma Sch", "SigmaSchedule"),
    ("threshold_schedule", "Ant.Blr Threshold Sch", "ThresholdSchedule"),
    ("aspect_ratio_schedule", "Aspect Ratio Sch", "AspectRatioSchedule"),
    ("fov_schedule", "FOV Sch", "FieldOfViewSchedule"),
    ("near_schedule", "Near Sch", "NearSchedule"),
    ("cadence_flow_factor_schedule", "Cadence Flow Factor Sch", "CadenceFlowFactorSchedule"),
    ("redo_flow_factor_schedule", "Redo Flow Factor Sch", "RedoFlowFactorSchedule"),
    ("far_schedule", "Far Sch", "FarSchedule"),
    ("hybrid_comp_alpha_schedule", "Hyb Comp Alpha Sch", "HybridCompAlphaSchedule"),
    ("hybrid_comp_mask_blend_alpha_schedule", "Hyb Comp Mask Blend Alpha Sch", "HybridCompMaskBlendAlphaSchedule"),
    ("hybrid_comp_mask_contrast_schedule", "Hyb Comp Mask Ctrst Sch", "HybridCompMaskContrastSchedule"),
    ("hybrid_comp_mask_auto_contrast_cutoff_high_schedule", "Hyb Comp Mask Auto Contrast Cutoff High Sch",
     "HybridCompMaskAutoContrastCutoffHighSchedule"),
    ("hybrid_comp_mask_auto_contrast_cutoff_low_schedule", "Hyb Comp Mask Auto Ctrst Cut Low Sch",
     "HybridCompMaskAutoContrastCutoffLowSchedule"),
    ("hybrid_flow_factor_schedule", "Hybrid Flow Factor Sch", "HybridFlowFactorSchedule"),
)
PROMPT_LABEL = "Prompt"
GEN_INFO_LABELS = tuple(label for _, label, _ in GEN_INFO_PARAMS) + (PROMPT_LABEL,)
# Text schedules (Deforum keeps their values as strings, quotes and parentheses removed).
TEXT_SCHEDULES = ("checkpoint_schedule", "sampler_schedule", "mask_schedule", "noise_mask_schedule")
# Deforum's defaults of the schedules the engine has no setting for (or keeps off, as steps / sampler).
DEFORUM_DEFAULTS = {
    "pix2pix_img_cfg_scale_schedule": "0:(1.5)",
    "subseed_schedule": "0: (1)",
    "subseed_strength_schedule": "0: (0)",
    "checkpoint_schedule": '0: ("model1.ckpt"), 100: ("model2.safetensors")',
    "steps_schedule": "0: (25)",
    "sampler_schedule": '0: ("Euler a")',
    "clipskip_schedule": "0: (2)",
    "mask_schedule": '0: ("{video_mask}")',
    "noise_mask_schedule": '0: ("{video_mask}")',
    "cadence_flow_factor_schedule": "0: (1)",
    "redo_flow_factor_schedule": "0: (1)",
    "hybrid_comp_alpha_schedule": "0:(0.5)",
    "hybrid_comp_mask_blend_alpha_schedule": "0:(0.5)",
    "hybrid_comp_mask_contrast_schedule": "0:(1)",
    "hybrid_comp_mask_auto_contrast_cutoff_high_schedule": "0:(100)",
    "hybrid_comp_mask_auto_contrast_cutoff_low_schedule": "0:(0)",
    "hybrid_flow_factor_schedule": "0:(1)",
}
SRT_ONLY_SCHEDULES = tuple(DEFORUM_DEFAULTS)
