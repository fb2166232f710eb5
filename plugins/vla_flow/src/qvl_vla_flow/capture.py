"""The capture format and its alignment under their first module's name, for the code that still
imports them from here (``convert.py`` and its tests).

The format (episode folders read and checked, or written) is :mod:`qvl_vla_flow.capture_format`,
the alignment of input events to frames :mod:`qvl_vla_flow.alignment`: import from those.
"""

from qvl_vla_flow.alignment import DUPLICATE_MODES, Alignment, align
from qvl_vla_flow.capture_format import (EPISODE_FILES, EVENTS_FILE, FRAME_TS_FILE, KEY_KINDS, KINDS, META_FILE,
                                         MOUSE_KINDS, VIDEO_FILE, Event, RecordedEpisode, read_episode, write_episode,
                                         write_video)

__all__ = ["DUPLICATE_MODES", "EPISODE_FILES", "EVENTS_FILE", "FRAME_TS_FILE", "KEY_KINDS", "KINDS", "META_FILE",
           "MOUSE_KINDS", "VIDEO_FILE", "Alignment", "Event", "RecordedEpisode", "align", "read_episode",
           "write_episode", "write_video"]
