// The PostgreSQL JDBC driver against `sabot serve`: connect, parameters ($1 through the extended
// protocol), every type Sabot produces read in text and (with prepareThreshold=-1) binary
// format, errors with their SQLSTATEs, and a windowed query over a table filled with a batch of
// parameterized inserts. Run by tests/server.rs as a single-file program with the server's port;
// exits non-zero with the differing values on any difference.

import java.math.BigDecimal;
import java.sql.*;
import java.util.Arrays;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

public class JdbcClient {
    static void check(String what, Object actual, Object expected) {
        if (!Objects.deepEquals(actual, expected)) {
            throw new AssertionError(what + ": got " + Arrays.deepToString(new Object[] {actual})
                + ", expected " + Arrays.deepToString(new Object[] {expected}));
        }
    }

    static final String EVERY_TYPE =
        "SELECT true, CAST(2 AS SMALLINT), CAST(3 AS INT), CAST(4 AS BIGINT), CAST(1.5 AS REAL), "
        + "CAST(2.25 AS DOUBLE), CAST(1.25 AS DECIMAL(10, 2)), 'text', CAST('ab' AS BYTEA), "
        + "DATE '2024-01-02', CAST('03:04:05' AS TIME), TIMESTAMP '2024-01-02 03:04:05.25', "
        + "arrow_cast(TIMESTAMP '2024-01-02 03:04:05.25', 'Timestamp(Microsecond, Some(\"UTC\"))'), "
        + "INTERVAL '1 day 3 seconds', make_array(1, 2, 3), make_array('a', NULL, 'c'), "
        + "CAST(NULL AS BIGINT)";

    static void everyType(Connection conn, String how) throws SQLException {
        try (PreparedStatement st = conn.prepareStatement(EVERY_TYPE);
             ResultSet rs = st.executeQuery()) {
            check(how + " next", rs.next(), true);
            check(how + " bool", rs.getBoolean(1), true);
            check(how + " int2", rs.getShort(2), (short) 2);
            check(how + " int4", rs.getInt(3), 3);
            check(how + " int8", rs.getLong(4), 4L);
            check(how + " float4", rs.getFloat(5), 1.5f);
            check(how + " float8", rs.getDouble(6), 2.25);
            check(how + " numeric", rs.getBigDecimal(7), new BigDecimal("1.25"));
            check(how + " text", rs.getString(8), "text");
            check(how + " bytea", rs.getBytes(9), "ab".getBytes());
            check(how + " date", rs.getDate(10).toLocalDate(), java.time.LocalDate.of(2024, 1, 2));
            check(how + " time", rs.getObject(11, java.time.LocalTime.class),
                java.time.LocalTime.of(3, 4, 5));
            check(how + " timestamp", rs.getObject(12, java.time.LocalDateTime.class),
                java.time.LocalDateTime.of(2024, 1, 2, 3, 4, 5, 250_000_000));
            check(how + " timestamptz", rs.getObject(13, java.time.OffsetDateTime.class).toInstant(),
                java.time.Instant.parse("2024-01-02T03:04:05.25Z"));
            org.postgresql.util.PGInterval interval = (org.postgresql.util.PGInterval) rs.getObject(14);
            check(how + " interval", new Object[] {interval.getDays(), interval.getHours(),
                interval.getMinutes(), interval.getWholeSeconds()}, new Object[] {1, 0, 0, 3});
            check(how + " int8[]", rs.getArray(15).getArray(), new Long[] {1L, 2L, 3L});
            check(how + " text[]", rs.getArray(16).getArray(), new String[] {"a", null, "c"});
            check(how + " null", rs.getObject(17), null);
            rs.getLong(17);
            check(how + " wasNull", rs.wasNull(), true);
            check(how + " one row", rs.next(), false);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/sabot";
        try (Connection conn = DriverManager.getConnection(url, "sabot", "")) {
            everyType(conn, "text");
            // Parameters.
            try (PreparedStatement st = conn.prepareStatement("SELECT ? + 1, upper(?)")) {
                st.setLong(1, 41);
                st.setString(2, "x");
                try (ResultSet rs = st.executeQuery()) {
                    rs.next();
                    check("parameter", rs.getLong(1), 42L);
                    check("text parameter", rs.getString(2), "X");
                }
            }
            // Errors with SQLSTATEs; the connection goes on.
            try (Statement st = conn.createStatement()) {
                try {
                    st.executeQuery("SELECT * FROM missing");
                    throw new AssertionError("a missing table was found");
                } catch (SQLException e) {
                    check("undefined table", e.getSQLState(), "42P01");
                }
                try {
                    st.executeQuery("SELEC 1");
                    throw new AssertionError("a syntax error passed");
                } catch (SQLException e) {
                    check("syntax error", e.getSQLState(), "42601");
                }
                try (ResultSet rs = st.executeQuery("SELECT 1")) {
                    rs.next();
                    check("after errors", rs.getInt(1), 1);
                }
                // A stream filled by a batch of parameterized inserts, and a window over it.
                st.execute("CREATE TABLE clicks (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) "
                    + "WITH ('connector' = 'memory')");
            }
            try (PreparedStatement st = conn.prepareStatement(
                    "INSERT INTO clicks VALUES (?, CAST(? AS TIMESTAMP(3)))")) {
                String[] times = {"2024-01-01 00:00:01", "2024-01-01 00:00:02",
                    "2024-01-01 00:00:09", "2024-01-01 00:00:12"};
                long[] keys = {1, 2, 1, 1};
                for (int i = 0; i < keys.length; i++) {
                    st.setLong(1, keys[i]);
                    st.setString(2, times[i]);
                    st.addBatch();
                }
                int[] counts = st.executeBatch();
                check("batch", counts, new int[] {1, 1, 1, 1});
            }
            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery("SELECT k, window_end, COUNT(*) FROM TABLE(TUMBLE("
                     + "TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) "
                     + "GROUP BY k, window_start, window_end ORDER BY window_end, k")) {
                List<String> rows = new ArrayList<>();
                while (rs.next()) {
                    rows.add(rs.getLong(1) + " " + rs.getTimestamp(2).toLocalDateTime() + " "
                        + rs.getLong(3));
                }
                check("windows", rows, List.of("1 2024-01-01T00:00:10 2", "2 2024-01-01T00:00:10 1",
                    "1 2024-01-01T00:00:20 1"));
            }
            DatabaseMetaData meta = conn.getMetaData();
            check("product", meta.getDatabaseProductName(), "PostgreSQL");
        }
        // Binary transfer from the first execution.
        try (Connection conn = DriverManager.getConnection(url + "?prepareThreshold=-1", "sabot", "")) {
            everyType(conn, "binary");
        }
        System.out.println("jdbc ok");
    }
}
