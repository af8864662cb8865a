-- swap: a swap file of the configured size, always on, with swappiness.
--
-- Creates the file (fallocate, mode 0600), formats it with mkswap, turns it
-- on, adds it to /etc/fstab, and sets vm.swappiness in /etc/sysctl.d.
-- In a container (docker, lxc, a test host...) swap belongs to the host
-- kernel and swapon fails: the module says so and skips. When /proc/sys is
-- read-only the sysctl file is still written, but not applied.
-- Each step checks the file itself (size, mode, swap signature), so a run
-- killed between steps resumes where it stopped; a swapon that fails with
-- EINVAL (a file system that cannot hold swap, such as an overlay) is said
-- and the module skips.
--
-- Section `swap:`
--   enabled: true
--   size: 2G            # M or G suffix; "auto" = RAM up to 2G, else 2G
--   path: /swapfile
--   swappiness: 10
--
-- Example:
--   swap:
--     size: 4G
--     swappiness: 10

-- "2G" -> 2048, "512M" -> 512, "auto" -> by memory; nil when unreadable
local function size_mb(size, memory_mb)
  if size == "auto" then
    return math.min(math.max(memory_mb or 1024, 1024), 2048)
  end
  local n, unit = tostring(size):match "^(%d+)%s*([MmGg]?)[Bb]?$"
  if not n then return nil end
  n = tonumber(n)
  if unit == "G" or unit == "g" then n = n * 1024 end
  return n
end

return {
  name = "swap",
  description = "Swap file with fstab entry and swappiness (skipped in containers)",
  version = "1",
  requires = { "baseline" },
  config = {
    enabled = { type = "boolean", default = true, description = "Manage a swap file" },
    size = { type = "string", default = "2G", pattern = "%w+", hint = "a size like 512M or 2G, or auto",
      description = "Swap file size: 512M, 2G, or auto" },
    path = { type = "string", default = "/swapfile", pattern = "/[%w_./%-]+", hint = "an absolute path like /swapfile",
      description = "Path of the swap file" },
    swappiness = { type = "integer", default = 10, min = 0, max = 100, description = "vm.swappiness (0-100)" },
  },
  validate = function(cfg, v)
    local mb = size_mb(cfg.size, 1024)
    if not mb or mb < 16 then
      v.error("swap.size", "expected a size of at least 16M like 512M or 2G, or auto, got \"" .. cfg.size .. "\"")
    end
  end,
  apply = function(ctx, cfg)
    local mb = size_mb(cfg.size, ctx.facts.memory_mb)
    if not mb or mb < 16 then
      ctx.fail("swap.size '" .. tostring(cfg.size) .. "' is not a size (e.g. 512M, 2G, auto)")
    end
    if cfg.swappiness < 0 or cfg.swappiness > 100 then
      ctx.fail("swap.swappiness " .. cfg.swappiness .. " is out of range (0-100)")
    end
    if not cfg.path:match "^/[%w_./%-]+$" then
      ctx.fail("swap.path '" .. cfg.path .. "' must be an absolute path")
    end
    if not cfg.enabled then return ctx.skip("swap.enabled is false") end
    if ctx.facts.container then
      return ctx.skip("running in a container (" .. tostring(ctx.facts.container) ..
        "): swap belongs to the host kernel and swapon fails here")
    end

    local active = false
    for _, dev in ipairs(ctx.facts.swap.devices) do
      if dev.path == cfg.path then active = true end
    end
    if not active then
      -- Each step checks the file itself, not the step before it, so a run
      -- killed at any step resumes there: a file of the wrong size is
      -- allocated again, a file without a swap signature is formatted.
      local p = cfg.path -- checked above: no shell metacharacters
      local is_swap = "blkid -p -s TYPE -o value " .. p .. " 2>/dev/null | grep -qx swap"
      ctx.cmd.run { argv = { "fallocate", "-l", mb .. "M", p }, desc = "allocate " .. mb .. "M swap file " .. p,
        unless = is_swap .. " || [ \"$(stat -c %s " .. p .. " 2>/dev/null)\" = " .. string.format("%d", mb * 1048576) .. " ]" }
      ctx.cmd.run { argv = { "chmod", "0600", p }, desc = "chmod 0600 " .. p,
        unless = "[ \"$(stat -c %a " .. p .. ")\" = 600 ]" }
      ctx.cmd.run { argv = { "mkswap", p }, desc = "mkswap " .. p, unless = is_swap }
      local ok, err = pcall(ctx.cmd.run, { argv = { "swapon", p }, desc = "swapon " .. p })
      if not ok then
        local why = type(err) == "table" and tostring(err.detail or "") .. " " .. tostring(err.message or "") or tostring(err)
        if not why:find("Invalid argument", 1, true) then error(err, 0) end
        return ctx.skip("swapon " .. p .. ": Invalid argument: this kernel or file system cannot swap to " ..
          "the file (an overlay, a container); the file is ready, and the next run tries swapon again")
      end
    end
    ctx.file.line { path = "/etc/fstab", line = cfg.path .. " none swap sw 0 0",
      match = "^" .. cfg.path:gsub("%p", "%%%0") .. "%s" }

    local sysctl = ctx.file.content { path = "/etc/sysctl.d/60-phanes-swap.conf", mode = "0644",
      content = "# Managed by phanes (module swap)\nvm.swappiness = " .. cfg.swappiness .. "\n" }
    if sysctl.changed or ctx.resuming then -- resuming: a killed run may not have applied it
      if ctx.facts.proc_sys_writable then
        ctx.cmd.run { argv = { "sysctl", "-q", "-p", "/etc/sysctl.d/60-phanes-swap.conf" },
          desc = "apply vm.swappiness" }
      else
        ctx.warn("/proc/sys is read-only: vm.swappiness applies at the next boot")
      end
    end
  end,
}
