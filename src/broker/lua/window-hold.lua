-- window-hold: a presence change held in a room's window (presence-windows.ts).
-- KEYS: the window's changes (list), its opener's mark (string). ARGV: the change, the caller's
-- token, the mark's life (SILENT windows, ms). Returns 1 when this call opened the window (no
-- mark: none open, or its opener went silent), else 0. The changes outlive a silent opener (their
-- TTL is long) so that the next opener sends them.
-- The TTL is set when the list is made (a busy room's later holds cost no PEXPIRE): a window is
-- taken within a mark's life or two, and the TTL only bounds a list nobody takes.
if redis.call('RPUSH', KEYS[1], ARGV[1]) == 1 then redis.call('PEXPIRE', KEYS[1], 4 * tonumber(ARGV[3]) + 60000) end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
return 0
