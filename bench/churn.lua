-- Connection churn: every event is a full TCP connect + login, one
-- "SELECT 1", then COM_QUIT + close (libmariadb's mysql_close).
-- (A fresh connection object per event: sysbench 1.0's con:reconnect()
-- crashes when a result set is still attached.)
function thread_init()
   drv = sysbench.sql.driver()
end

function event()
   local con = drv:connect()
   local rs = con:query("SELECT 1")
   if rs == nil or rs.nrows ~= 1 then
      error("churn: SELECT 1 returned no row")
   end
   con:disconnect()
end
