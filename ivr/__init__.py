"""hotline IVR: call flows from the dialplan (menus, digit collection, prompts and TTS,
voicemail, survey) as applications of `softswitch.call` (SPEC DP-3 … DP-8, OUT-3)."""
