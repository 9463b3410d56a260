// Drives `fhirlake serve`'s Flight SQL endpoint with the Apache Arrow Flight SQL JDBC
// driver (org.apache.arrow:flight-sql-jdbc-driver from Maven Central), as DBeaver or any
// JDBC tool would, and prints what it saw, one "name<TAB>value" line each.
// flight_integration_test.go compiles it with javac and asserts on its output.
//
// usage: java -cp DRIVER.jar:DIR FlightJdbcClient JDBC_URL KEY OTHER_TENANT_KEY TENANT DASHBOARD_SQL

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class FlightJdbcClient {
  interface Step {
    String run() throws Exception;
  }

  static void report(String name, Step step) {
    String value;
    try {
      value = "ok " + step.run();
    } catch (Exception e) {
      value = "error " + e.getClass().getSimpleName() + ": " + e.getMessage();
    }
    System.out.println(name + "\t" + value.replace('\n', ' ').replace('\t', ' '));
  }

  static Connection connect(String url, String key, String tenant) throws Exception {
    Properties p = new Properties();
    p.setProperty("token", key);
    if (tenant != null) {
      p.setProperty("tenant", tenant); // sent as a call header
    }
    return DriverManager.getConnection(url, p);
  }

  static String scalar(Connection c, String sql) throws Exception {
    try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(sql)) {
      rs.next();
      return rs.getString(1);
    }
  }

  public static void main(String[] args) throws Exception {
    String url = args[0], key = args[1], otherKey = args[2], tenant = args[3], dashboard = args[4];
    try (Connection c = connect(url, key, null)) {
      report("dashboard_rows", () -> {
        int n = 0;
        try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(dashboard)) {
          while (rs.next()) {
            n++;
          }
        }
        return Integer.toString(n);
      });
      report("tables", () -> {
        List<String> names = new ArrayList<>();
        DatabaseMetaData md = c.getMetaData();
        try (ResultSet rs = md.getTables(null, null, "%", null)) {
          while (rs.next()) {
            names.add(rs.getString("TABLE_NAME"));
          }
        }
        return String.join(",", names);
      });
      report("patient_columns", () -> {
        List<String> names = new ArrayList<>();
        try (ResultSet rs = c.getMetaData().getColumns(null, null, "patient", "%")) {
          while (rs.next()) {
            names.add(rs.getString("COLUMN_NAME"));
          }
        }
        return String.join(",", names);
      });
      report("prepared_female", () -> {
        try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM patient WHERE gender = ?")) {
          ps.setString(1, "female");
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            return rs.getString(1);
          }
        }
      });
      report("literal_female", () -> scalar(c, "SELECT count(*) FROM patient WHERE gender = 'female'"));
      report("insert", () -> {
        try (Statement st = c.createStatement()) {
          return Integer.toString(st.executeUpdate("INSERT INTO patient VALUES (1)"));
        }
      });
      report("runaway", () -> scalar(c, "SELECT count(*) FROM range(1000000000) a, range(1000000000) b WHERE a.range + b.range = -1"));
    }
    report("other_key", () -> {
      try (Connection o = connect(url, otherKey, tenant)) {
        return scalar(o, "SELECT count(*) FROM patient");
      }
    });
  }
}
