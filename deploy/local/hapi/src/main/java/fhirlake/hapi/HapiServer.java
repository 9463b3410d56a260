package fhirlake.hapi;

import ca.uhn.fhir.batch2.api.IJobMaintenanceService;
import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.batch2.jobs.export.BulkDataExportProvider;
import ca.uhn.fhir.batch2.maintenance.JobMaintenanceServiceImpl;
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.interceptor.api.Hook;
import ca.uhn.fhir.interceptor.api.Pointcut;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings;
import ca.uhn.fhir.jpa.api.config.ThreadPoolFactoryConfig;
import ca.uhn.fhir.jpa.api.dao.DaoRegistry;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.config.util.HapiEntityManagerFactoryUtil;
import ca.uhn.fhir.jpa.model.config.PartitionSettings;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.model.dialect.HapiFhirH2Dialect;
import ca.uhn.fhir.jpa.provider.JpaSystemProvider;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import ca.uhn.fhir.jpa.topic.ISubscriptionTopicLoader;
import ca.uhn.fhir.jpa.topic.SubscriptionTopicConfig;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.rest.server.RestfulServer;
import ca.uhn.fhir.rest.server.provider.ResourceProviderFactory;
import jakarta.persistence.EntityManagerFactory;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.Properties;
import org.apache.commons.dbcp2.BasicDataSource;
import org.hl7.fhir.dstu2.model.Subscription.SubscriptionChannelType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.config.ConfigurableListableBeanFactory;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.ImportAutoConfiguration;
import org.springframework.boot.autoconfigure.web.servlet.ServletWebServerFactoryAutoConfiguration;
import org.springframework.boot.context.event.ApplicationReadyEvent;
import org.springframework.boot.web.servlet.ServletRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.context.annotation.Primary;
import org.springframework.context.event.EventListener;
import org.springframework.orm.jpa.JpaTransactionManager;
import org.springframework.orm.jpa.LocalContainerEntityManagerFactoryBean;

/**
 * A HAPI FHIR R4 JPA server for fhirlake's tests: H2 in memory, REST-hook and R4 Backport
 * topic subscriptions, Bulk Data $export, at /fhir on 127.0.0.1 (server.port, set by
 * deploy/local/stack). Settings favour test speed over throughput: subscriptions are
 * delivered every 500 ms, topics are reloaded after every write of a topic, and batch jobs
 * ($export) are driven every second.
 */
@Configuration
@ImportAutoConfiguration(ServletWebServerFactoryAutoConfiguration.class)
@Import({
	JpaR4Config.class,
	HapiJpaConfig.class,
	ThreadPoolFactoryConfig.class,
	SubscriptionSubmitterConfig.class,
	SubscriptionProcessorConfig.class,
	SubscriptionChannelConfig.class,
	SubscriptionTopicConfig.class,
	JpaBatch2Config.class,
	Batch2JobsConfig.class
})
public class HapiServer {

	private static final Logger log = LoggerFactory.getLogger(HapiServer.class);

	public static void main(String[] args) {
		SpringApplication.run(HapiServer.class, args);
	}

	/**
	 * Builds the CapabilityStatement once, alone, before anyone else asks: HAPI builds it
	 * lazily into a shared map, and concurrent first requests (readiness probes that time
	 * out and retry) can corrupt that map and spin forever. "ready" in the log is what
	 * deploy/local/stack waits for.
	 */
	@EventListener(ApplicationReadyEvent.class)
	public void warmUp(ApplicationReadyEvent event) throws Exception {
		String port = event.getApplicationContext().getEnvironment().getProperty("local.server.port");
		String address = event.getApplicationContext().getEnvironment().getProperty("server.address", "127.0.0.1");
		HttpClient client = HttpClient.newHttpClient();
		HttpResponse<Void> rsp = client.send(
				HttpRequest.newBuilder(URI.create("http://" + address + ":" + port + "/fhir/metadata")).build(),
				HttpResponse.BodyHandlers.discarding());
		log.info("fhirlake HAPI FHIR server ready on http://{}:{}/fhir (metadata {})", address, port, rsp.statusCode());
	}

	@Bean
	public JpaStorageSettings storageSettings() {
		JpaStorageSettings s = new JpaStorageSettings();
		// Tests delete Patients that Observations still point at, and write in any order.
		s.setEnforceReferentialIntegrityOnDelete(false);
		s.setEnforceReferentialIntegrityOnWrite(false);
		s.setAllowExternalReferences(true);
		s.setAllowMultipleDelete(true);
		s.setExpungeEnabled(true);
		// $export: a job's steps run as soon as the previous one ends, not at the next
		// maintenance pass; no reuse of an earlier export's results.
		s.setJobFastTrackingEnabled(true);
		s.setEnableBulkExportJobReuse(false);
		return s;
	}

	@Bean
	public SubscriptionSettings subscriptionSettings() {
		SubscriptionSettings s = new SubscriptionSettings();
		s.addSupportedSubscriptionType(SubscriptionChannelType.RESTHOOK);
		s.setSubscriptionIntervalInMs(500);
		// Localhost endpoints are what the tests use.
		s.setRestHookEndpointUrlValidationRegex(null);
		return s;
	}

	@Bean
	public PartitionSettings partitionSettings() {
		return new PartitionSettings();
	}

	@Bean
	public IEmailSender emailSender() {
		return details -> {}; // no email channel here
	}

	@Bean(destroyMethod = "close")
	public BasicDataSource dataSource() {
		BasicDataSource ds = new BasicDataSource();
		ds.setDriver(new org.h2.Driver());
		ds.setUrl("jdbc:h2:mem:fhirlake;DB_CLOSE_DELAY=-1");
		ds.setUsername("sa");
		ds.setPassword("");
		ds.setMaxTotal(20);
		return ds;
	}

	@Bean
	public LocalContainerEntityManagerFactoryBean entityManagerFactory(
			ConfigurableListableBeanFactory beanFactory, FhirContext ctx, JpaStorageSettings settings) {
		LocalContainerEntityManagerFactoryBean emf =
				HapiEntityManagerFactoryUtil.newEntityManagerFactory(beanFactory, ctx, settings);
		emf.setPersistenceUnitName("HAPI_PU");
		emf.setDataSource(dataSource());
		Properties p = new Properties();
		p.put("hibernate.dialect", HapiFhirH2Dialect.class.getName());
		p.put("hibernate.hbm2ddl.auto", "update");
		p.put("hibernate.search.enabled", "false");
		p.put("hibernate.format_sql", "false");
		p.put("hibernate.show_sql", "false");
		emf.setJpaProperties(p);
		return emf;
	}

	@Bean
	@Primary
	public JpaTransactionManager transactionManager(EntityManagerFactory emf) {
		return new JpaTransactionManager(emf);
	}

	/** Runs the batch maintenance pass (which moves $export along) every second. */
	@Bean
	public Object fastBatchMaintenance(IJobMaintenanceService maintenance) {
		if (maintenance instanceof JobMaintenanceServiceImpl impl) {
			impl.setScheduledJobFrequencyMillis(1000);
		}
		return new Object();
	}

	/**
	 * HAPI reloads R4 topics (Basic resources) only every minute; reload them right after a
	 * request wrote one, so a subscription to a new topic matches the next write.
	 */
	public static class TopicReloader {
		private final ISubscriptionTopicLoader loader;

		TopicReloader(ISubscriptionTopicLoader loader) {
			this.loader = loader;
		}

		@Hook(Pointcut.SERVER_PROCESSING_COMPLETED_NORMALLY)
		public void completed(RequestDetails request) {
			if ("Basic".equals(request.getResourceName()) || "SubscriptionTopic".equals(request.getResourceName())) {
				loader.forceRefresh();
			}
		}
	}

	@Bean
	public ServletRegistrationBean<RestfulServer> fhirServlet(
			FhirContext ctx,
			ResourceProviderFactory resourceProviders,
			JpaSystemProvider<?, ?> systemProvider,
			BulkDataExportProvider bulkExport,
			DaoRegistry daoRegistry,
			ca.uhn.fhir.interceptor.api.IInterceptorService interceptors,
			ISubscriptionTopicLoader topicLoader) {
		RestfulServer server = new RestfulServer(ctx, interceptors);
		server.registerProviders(resourceProviders.createProviders());
		server.registerProviders(systemProvider, bulkExport);
		server.registerInterceptor(new TopicReloader(topicLoader));
		server.setDefaultPrettyPrint(false);
		ServletRegistrationBean<RestfulServer> reg = new ServletRegistrationBean<>(server, "/fhir/*");
		reg.setLoadOnStartup(1);
		return reg;
	}
}
