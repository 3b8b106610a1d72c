-- One client reads a large result set that the server replays from its query
-- cache (query_cache_type=DEMAND + SQL_CACHE), so the time goes into moving
-- bytes through the path, not into producing them.
-- Options: --bulk-rows (rows of --bulk-row-bytes bytes each).
sysbench.cmdline.options = {
   ["bulk-rows"] = {"rows in the result set", 200},
   ["bulk-row-bytes"] = {"bytes of payload per row", 1000000},
}

local query

function thread_init()
   drv = sysbench.sql.driver()
   con = drv:connect()
   query = string.format("SELECT SQL_CACHE REPEAT('x', %d) FROM seq_1_to_%d",
                         sysbench.opt.bulk_row_bytes, sysbench.opt.bulk_rows)
end

function event()
   local rs = con:query(query)
   if rs == nil or rs.nrows ~= sysbench.opt.bulk_rows then
      error(string.format("bulk: expected %d rows, got %s",
                          sysbench.opt.bulk_rows, rs and tostring(rs.nrows) or "nil"))
   end
end

function thread_done()
   con:disconnect()
end
