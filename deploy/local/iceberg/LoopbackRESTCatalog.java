// Apache Iceberg's REST catalog test fixture (org.apache.iceberg.rest.RESTCatalogServer,
// from iceberg-open-api's test-fixtures jar), bound to one address instead of every one.
//
// The fixture's own main listens on 0.0.0.0. This launcher builds the same backend catalog
// (the fixture's initializeBackendCatalog: CATALOG_* environment variables, a JdbcCatalog
// by default) and the same adapter, and serves them with Jetty on
// CATALOG_REST_HOST:CATALOG_REST_PORT only. Run as a single source file:
//   java -cp '.cache/iceberg-rest/libs/*' deploy/local/iceberg/LoopbackRESTCatalog.java
import java.lang.reflect.Constructor;
import java.lang.reflect.Method;
import org.apache.iceberg.rest.RESTCatalogAdapter;
import org.apache.iceberg.rest.RESTCatalogServer;
import org.apache.iceberg.rest.RESTCatalogServlet;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.server.handler.gzip.GzipHandler;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;

public class LoopbackRESTCatalog {
  public static void main(String[] args) throws Exception {
    String host = env("CATALOG_REST_HOST", "127.0.0.1");
    int port = Integer.parseInt(env("CATALOG_REST_PORT", "8181"));

    // The fixture's backend and adapter are package-private: reach them by reflection
    // so that the catalog served is exactly the fixture's.
    Method init = RESTCatalogServer.class.getDeclaredMethod("initializeBackendCatalog");
    init.setAccessible(true);
    Constructor<RESTCatalogServer> server0 = RESTCatalogServer.class.getDeclaredConstructor();
    server0.setAccessible(true);
    Object context = init.invoke(server0.newInstance());
    Class<?> adapterClass = Class.forName("org.apache.iceberg.rest.RESTServerCatalogAdapter");
    Constructor<?> make = adapterClass.getDeclaredConstructor(context.getClass());
    make.setAccessible(true);
    RESTCatalogAdapter adapter = (RESTCatalogAdapter) make.newInstance(context);

    ServletContextHandler handler = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    handler.addServlet(new ServletHolder(new RESTCatalogServlet(adapter)), "/*");
    handler.insertHandler(new GzipHandler());

    Server server = new Server();
    ServerConnector connector = new ServerConnector(server);
    connector.setHost(host);
    connector.setPort(port);
    server.addConnector(connector);
    server.setHandler(handler);
    server.start();
    System.err.printf("iceberg REST catalog listening on http://%s:%d%n", host, port);
    server.join();
  }

  private static String env(String name, String fallback) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? fallback : v;
  }
}
