package tdist.peer;

import brave.Span;
import brave.Tracing;
import brave.handler.MutableSpan;
import brave.handler.SpanHandler;
import brave.http.HttpClientHandler;
import brave.http.HttpClientRequest;
import brave.http.HttpClientResponse;
import brave.http.HttpServerHandler;
import brave.http.HttpServerRequest;
import brave.http.HttpServerResponse;
import brave.http.HttpTracing;
import brave.kafka.clients.KafkaTracing;
import brave.propagation.B3Propagation;
import brave.propagation.TraceContext;
import brave.propagation.TraceContextOrSamplingFlags;
import brave.sampler.Sampler;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Brave side of tdist's interoperability tests. Every mode prints one JSON object per line on
 * stdout (diagnostics go to stderr) and exits non-zero on failure.
 *
 * <pre>
 * consume TOPIC N      read N records from partition 0 of TOPIC with a KafkaTracing consumer
 * produce TOPIC N      send N records through a KafkaTracing producer
 * http-client URL      one GET through Brave's HttpClientHandler
 * http-server PORT N   serve N requests through Brave's HttpServerHandler (PORT 0: any free port)
 * </pre>
 *
 * Kafka modes read the bootstrap servers from TDIST_KAFKA_BOOTSTRAP_SERVERS. New traces get 64-bit
 * trace ids (Brave's default), or 128-bit ones when TDIST_BRAVE_TRACE_ID_128=1.
 */
public final class BravePeer {
  /** Finished spans by span id, recorded by the tracer's handler. */
  static final Map<String, MutableSpan> FINISHED = new ConcurrentHashMap<>();

  public static void main(String[] args) throws Exception {
    if (args.length < 2) {
      usage();
    }
    Tracing tracing =
        Tracing.newBuilder()
            .localServiceName("brave-peer")
            .propagationFactory(B3Propagation.FACTORY)
            .sampler(Sampler.ALWAYS_SAMPLE)
            .traceId128Bit("1".equals(System.getenv("TDIST_BRAVE_TRACE_ID_128")))
            .addSpanHandler(
                new SpanHandler() {
                  @Override
                  public boolean end(TraceContext context, MutableSpan span, Cause cause) {
                    FINISHED.put(context.spanIdString(), span);
                    return true;
                  }
                })
            .build();
    try {
      switch (args[0]) {
        case "consume" -> consume(tracing, args[1], count(args, 2));
        case "produce" -> produce(tracing, args[1], count(args, 2));
        case "http-client" -> httpClient(tracing, args[1]);
        case "http-server" -> httpServer(tracing, Integer.parseInt(args[1]), count(args, 2));
        default -> usage();
      }
    } finally {
      tracing.close();
    }
  }

  static void usage() {
    System.err.println(
        "usage: BravePeer consume TOPIC N | produce TOPIC N | http-client URL | http-server PORT N");
    System.exit(2);
  }

  static int count(String[] args, int i) {
    if (args.length <= i) {
      usage();
    }
    return Integer.parseInt(args[i]);
  }

  static String bootstrap() {
    String s = System.getenv("TDIST_KAFKA_BOOTSTRAP_SERVERS");
    if (s == null || s.isBlank()) {
      System.err.println("TDIST_KAFKA_BOOTSTRAP_SERVERS is not set");
      System.exit(2);
    }
    return s.trim();
  }

  // ---- Kafka -------------------------------------------------------------------------------

  static void consume(Tracing tracing, String topic, int n) throws Exception {
    KafkaTracing kafkaTracing = KafkaTracing.create(tracing);
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    int printed = 0;
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    try (Consumer<String, String> consumer = kafkaTracing.consumer(new KafkaConsumer<>(p))) {
      TopicPartition tp = new TopicPartition(topic, 0);
      consumer.assign(List.of(tp));
      consumer.seekToBeginning(List.of(tp));
      while (printed < n && System.nanoTime() < deadline) {
        ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
        for (ConsumerRecord<String, String> record : records) {
          if (printed >= n) {
            break;
          }
          // The header our producer wrote is gone now: TracingConsumer extracted it, started its
          // CONSUMER span as a child and injected that span back.
          String b3AfterPoll = header(record, "b3");
          Span process = kafkaTracing.nextSpan(record).name("process").start();
          TraceContext pc = process.context();
          process.finish();
          MutableSpan poll = FINISHED.get(pc.parentIdString());
          StringBuilder out = new StringBuilder("{");
          field(out, "offset", Long.toString(record.offset()), false);
          field(out, "key", record.key(), true);
          field(out, "value", record.value(), true);
          field(out, "b3_after_poll", b3AfterPoll, true);
          field(out, "process_trace_id", pc.traceIdString(), true);
          field(out, "process_span_id", pc.spanIdString(), true);
          field(out, "process_parent_id", pc.parentIdString(), true);
          if (poll != null) {
            field(out, "consumer_kind", String.valueOf(poll.kind()), true);
            field(out, "consumer_name", poll.name(), true);
            field(out, "consumer_trace_id", poll.traceId(), true);
            field(out, "consumer_span_id", poll.id(), true);
            field(out, "consumer_parent_id", poll.parentId(), true);
          }
          out.setCharAt(out.length() - 1, '}');
          System.out.println(out);
          System.out.flush();
          printed++;
        }
      }
    }
    if (printed < n) {
      System.err.println("read " + printed + " of " + n + " records from " + topic);
      System.exit(1);
    }
  }

  static void produce(Tracing tracing, String topic, int n) throws Exception {
    KafkaTracing kafkaTracing = KafkaTracing.create(tracing);
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    p.put(ProducerConfig.LINGER_MS_CONFIG, "1");
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    List<String> lines = new ArrayList<>();
    try (Producer<String, String> producer = kafkaTracing.producer(new KafkaProducer<>(p))) {
      for (int i = 0; i < n; i++) {
        ProducerRecord<String, String> record =
            new ProducerRecord<>(topic, 0, "key-" + i, "from brave " + i);
        var meta = producer.send(record).get(30, TimeUnit.SECONDS);
        // TracingProducer injected its PRODUCER span into the record's headers.
        String b3 = header(record, "b3");
        String[] parts = b3 == null ? new String[0] : b3.split("-");
        StringBuilder out = new StringBuilder("{");
        field(out, "offset", Long.toString(meta.offset()), false);
        field(out, "key", record.key(), true);
        field(out, "value", record.value(), true);
        field(out, "b3", b3, true);
        if (parts.length >= 2) {
          MutableSpan span = waitFinished(parts[1]);
          if (span != null) {
            field(out, "producer_kind", String.valueOf(span.kind()), true);
            field(out, "producer_name", span.name(), true);
            field(out, "producer_trace_id", span.traceId(), true);
            field(out, "producer_span_id", span.id(), true);
            field(out, "producer_parent_id", span.parentId(), true);
          }
        }
        out.setCharAt(out.length() - 1, '}');
        lines.add(out.toString());
      }
    }
    for (String line : lines) {
      System.out.println(line);
    }
    System.out.flush();
  }

  /** The PRODUCER span finishes in the send callback, which may run just after get() returns. */
  static MutableSpan waitFinished(String spanId) throws InterruptedException {
    for (int i = 0; i < 100; i++) {
      MutableSpan s = FINISHED.get(spanId);
      if (s != null) {
        return s;
      }
      Thread.sleep(20);
    }
    return null;
  }

  static String header(ConsumerRecord<?, ?> r, String key) {
    return value(r.headers().lastHeader(key));
  }

  static String header(ProducerRecord<?, ?> r, String key) {
    return value(r.headers().lastHeader(key));
  }

  static String value(Header h) {
    return h == null || h.value() == null ? null : new String(h.value(), StandardCharsets.UTF_8);
  }

  // ---- HTTP --------------------------------------------------------------------------------

  static void httpClient(Tracing tracing, String url) throws Exception {
    HttpTracing httpTracing = HttpTracing.create(tracing);
    HttpClientHandler<HttpClientRequest, HttpClientResponse> handler =
        HttpClientHandler.create(httpTracing);
    HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    HttpRequest.Builder builder =
        HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(30)).GET();
    ClientRequest request = new ClientRequest(builder, URI.create(url));
    Span span = handler.handleSend(request);
    TraceContext c = span.context();
    int status = 0;
    Throwable error = null;
    try {
      HttpResponse<String> response =
          client.send(builder.build(), HttpResponse.BodyHandlers.ofString());
      status = response.statusCode();
    } catch (IOException | InterruptedException e) {
      error = e;
    }
    handler.handleReceive(new ClientResponse(request, status, error), span);
    StringBuilder out = new StringBuilder("{");
    field(out, "status", Integer.toString(status), false);
    field(out, "trace_id", c.traceIdString(), true);
    field(out, "span_id", c.spanIdString(), true);
    field(out, "parent_id", c.parentIdString(), true);
    field(out, "sent_headers", request.sent.toString(), true);
    out.setCharAt(out.length() - 1, '}');
    System.out.println(out);
    System.out.flush();
    if (error != null) {
      System.err.println("request failed: " + error);
      System.exit(1);
    }
  }

  static void httpServer(Tracing tracing, int port, int n) throws Exception {
    HttpTracing httpTracing = HttpTracing.create(tracing);
    HttpServerHandler<HttpServerRequest, HttpServerResponse> handler =
        HttpServerHandler.create(httpTracing);
    TraceContext.Extractor<HttpExchange> extractor =
        tracing.propagation().extractor((ex, key) -> ex.getRequestHeaders().getFirst(key));
    CountDownLatch served = new CountDownLatch(n);
    HttpServer server =
        HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 16);
    server.createContext(
        "/",
        ex -> {
          try (InputStream in = ex.getRequestBody()) {
            in.readAllBytes();
          }
          TraceContextOrSamplingFlags extracted = extractor.extract(ex);
          ServerRequest request = new ServerRequest(ex);
          Span span = handler.handleReceive(request);
          TraceContext sc = span.context();
          byte[] body = "brave says hello\n".getBytes(StandardCharsets.UTF_8);
          ex.getResponseHeaders().add("Content-Type", "text/plain");
          ex.sendResponseHeaders(200, body.length);
          ex.getResponseBody().write(body);
          ex.close();
          handler.handleSend(new ServerResponse(request, 200), span);
          TraceContext e = extracted.context();
          StringBuilder out = new StringBuilder("{");
          field(out, "method", ex.getRequestMethod(), true);
          field(out, "path", ex.getRequestURI().getPath(), true);
          field(out, "b3", ex.getRequestHeaders().getFirst("b3"), true);
          field(out, "x_b3_traceid", ex.getRequestHeaders().getFirst("X-B3-TraceId"), true);
          field(out, "x_b3_spanid", ex.getRequestHeaders().getFirst("X-B3-SpanId"), true);
          field(out, "x_b3_parentspanid", ex.getRequestHeaders().getFirst("X-B3-ParentSpanId"), true);
          field(out, "x_b3_sampled", ex.getRequestHeaders().getFirst("X-B3-Sampled"), true);
          if (e != null) {
            field(out, "extracted_trace_id", e.traceIdString(), true);
            field(out, "extracted_span_id", e.spanIdString(), true);
            field(out, "extracted_parent_id", e.parentIdString(), true);
            field(out, "extracted_sampled", String.valueOf(e.sampled()), true);
          }
          field(out, "server_trace_id", sc.traceIdString(), true);
          field(out, "server_span_id", sc.spanIdString(), true);
          field(out, "server_parent_id", sc.parentIdString(), true);
          field(out, "server_shared", Boolean.toString(sc.shared()), false);
          out.setCharAt(out.length() - 1, '}');
          synchronized (System.out) {
            System.out.println(out);
            System.out.flush();
          }
          served.countDown();
        });
    server.start();
    System.out.println("{\"listening\":" + server.getAddress().getPort() + "}");
    System.out.flush();
    boolean done = served.await(120, TimeUnit.SECONDS);
    server.stop(0);
    if (!done) {
      System.err.println("served " + (n - served.getCount()) + " of " + n + " requests");
      System.exit(1);
    }
  }

  static final class ClientRequest extends HttpClientRequest {
    final HttpRequest.Builder builder;
    final URI uri;
    final List<String> sent = Collections.synchronizedList(new ArrayList<>());

    ClientRequest(HttpRequest.Builder builder, URI uri) {
      this.builder = builder;
      this.uri = uri;
    }

    @Override
    public Object unwrap() {
      return builder;
    }

    @Override
    public String method() {
      return "GET";
    }

    @Override
    public String path() {
      return uri.getPath();
    }

    @Override
    public String url() {
      return uri.toString();
    }

    @Override
    public String header(String name) {
      return null;
    }

    @Override
    public void header(String name, String value) {
      builder.header(name, value);
      sent.add(name + ": " + value);
    }
  }

  static final class ClientResponse extends HttpClientResponse {
    final ClientRequest request;
    final int status;
    final Throwable error;

    ClientResponse(ClientRequest request, int status, Throwable error) {
      this.request = request;
      this.status = status;
      this.error = error;
    }

    @Override
    public Object unwrap() {
      return this;
    }

    @Override
    public HttpClientRequest request() {
      return request;
    }

    @Override
    public Throwable error() {
      return error;
    }

    @Override
    public int statusCode() {
      return status;
    }
  }

  static final class ServerRequest extends HttpServerRequest {
    final HttpExchange ex;

    ServerRequest(HttpExchange ex) {
      this.ex = ex;
    }

    @Override
    public Object unwrap() {
      return ex;
    }

    @Override
    public String method() {
      return ex.getRequestMethod();
    }

    @Override
    public String path() {
      return ex.getRequestURI().getPath();
    }

    @Override
    public String url() {
      return "http://" + ex.getLocalAddress().getHostString() + ex.getRequestURI();
    }

    @Override
    public String header(String name) {
      return ex.getRequestHeaders().getFirst(name);
    }
  }

  static final class ServerResponse extends HttpServerResponse {
    final ServerRequest request;
    final int status;

    ServerResponse(ServerRequest request, int status) {
      this.request = request;
      this.status = status;
    }

    @Override
    public Object unwrap() {
      return this;
    }

    @Override
    public HttpServerRequest request() {
      return request;
    }

    @Override
    public int statusCode() {
      return status;
    }
  }

  // ---- JSON --------------------------------------------------------------------------------

  /** Appends `"name":value,` (a JSON string when quoted; null when value is null). */
  static void field(StringBuilder out, String name, String value, boolean quoted) {
    out.append('"').append(name).append("\":");
    if (value == null) {
      out.append("null");
    } else if (!quoted) {
      out.append(value);
    } else {
      out.append('"');
      for (char ch : value.toCharArray()) {
        switch (ch) {
          case '"' -> out.append("\\\"");
          case '\\' -> out.append("\\\\");
          case '\n' -> out.append("\\n");
          case '\r' -> out.append("\\r");
          case '\t' -> out.append("\\t");
          default -> {
            if (ch < 0x20) {
              out.append(String.format("\\u%04x", (int) ch));
            } else {
              out.append(ch);
            }
          }
        }
      }
      out.append('"');
    }
    out.append(',');
  }
}
