-- ai: a local-AI workstation: minimal + Ollama, ComfyUI and SillyTavern,
-- each on 127.0.0.1 by default. LM Studio's headless server is opt-in:
-- phanes apply --modules ai,lmstudio (or list it in your own profile).
return {
  name = "ai",
  description = "Local-AI workstation: minimal + Ollama, ComfyUI and SillyTavern (LM Studio opt-in via --modules)",
  modules = { "baseline", "user", "security", "swap", "updates", "ollama", "comfyui", "sillytavern" },
  config = {},
}
