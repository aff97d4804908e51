"""ControlNet units and masks: the units' settings and preprocessors, mask pictures and expressions.

preprocess.py turns pictures into control maps; masks.py holds the mask image steps; sources.py
reads control and mask pictures and videos frame by frame. What lower layers need lives lower:
config/control_units.py reads Deforum's cn_1 .. cn_5 settings (the settings model builds its fields
from it), schedules/mask_expressions.py parses Deforum's composable masks, and plan/control.py gives
the units' and masks' per-frame values; rendering/guidance.py asks all of them frame by frame.
"""
