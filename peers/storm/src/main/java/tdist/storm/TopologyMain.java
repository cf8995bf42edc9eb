package tdist.storm;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.apache.storm.Config;
import org.apache.storm.LocalCluster;
import org.apache.storm.generated.KillOptions;
import org.apache.storm.topology.TopologyBuilder;
import org.apache.storm.tuple.Fields;

/**
 * Runs spout -> Rust split bolt -> Rust count bolt on an in-process LocalCluster, waits (bounded)
 * until the spout saw an ack or fail for every message and the bolts reported their spans, then
 * kills the topology and exits: 0 when every message was acked, 1 otherwise.
 *
 * <p>Usage: {@code TopologyMain OUT_DIR BOLT_BINARY [SLEEP_SECS] [TIMEOUT_SECS]}. Writes to OUT_DIR:
 * {@code spout.jsonl} (one line per emitted tuple with its parent context), {@code acks.txt},
 * {@code spans-split.jsonl} and {@code spans-count.jsonl} (the bolts' TDIST_FILEs), and
 * {@code topology.pid} (this JVM's process id).
 */
public final class TopologyMain {
    static final String OUT_DIR_KEY = "tdist.out.dir";
    private static final String NAME = "tdist-storm-cluster";
    /** Logged just before the topology is killed (the test checks the log before it). */
    static final String KILL_MARKER = "killing the topology";

    private TopologyMain() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: TopologyMain OUT_DIR BOLT_BINARY [SLEEP_SECS] [TIMEOUT_SECS]");
            System.exit(2);
        }
        Path out = Path.of(args[0]).toAbsolutePath();
        String bolt = Path.of(args[1]).toAbsolutePath().toString();
        int sleepSecs = args.length > 2 ? Integer.parseInt(args[2]) : 7;
        int timeoutSecs = args.length > 3 ? Integer.parseInt(args[3]) : 120;
        Files.createDirectories(out);
        // Lets a CI script stop this very process (by id) if its caller was interrupted.
        Files.writeString(out.resolve("topology.pid"), ProcessHandle.current().pid() + "\n");
        for (String f : List.of("spout.jsonl", "acks.txt", "spans-split.jsonl", "spans-count.jsonl")) {
            Files.deleteIfExists(out.resolve(f));
        }

        List<String> sentences = List.of(
            "the quick brown fox",
            "jumps over the lazy dog",
            "storm works sleep=" + sleepSecs + " on this one",
            "four score and seven",
            "to be or not to be",
            "rust bolts under a real storm");
        int words = sentences.stream().mapToInt(s -> s.split("\\s+").length).sum();

        TopologyBuilder builder = new TopologyBuilder();
        builder.setSpout("sentences", new TracingSpout(sentences), 1);
        builder.setBolt("split", new RustBolt(new String[] {bolt, "split"},
                env(out, "split"), "word", "_trace"), 1)
            .shuffleGrouping("sentences");
        builder.setBolt("count", new RustBolt(new String[] {bolt, "count"},
                env(out, "count"), "word", "count", "_trace"), 1)
            .fieldsGrouping("split", new Fields("word"));

        Config conf = new Config();
        conf.setNumWorkers(1);
        conf.setMessageTimeoutSecs(60);
        // Lower than the count bolt's work on the sleep=N word: the Rust runtime must keep
        // answering heartbeats while execute() runs, or ShellBolt dies.
        conf.put(Config.TOPOLOGY_SUBPROCESS_TIMEOUT_SECS, 5);
        conf.put(OUT_DIR_KEY, out.toString());

        int status;
        long t0 = System.nanoTime();
        try (LocalCluster cluster = new LocalCluster()) {
            cluster.submitTopology(NAME, conf, builder.createTopology());
            log("submitted; waiting for " + sentences.size() + " acks");
            long deadline = t0 + timeoutSecs * 1_000_000_000L;
            while (TracingSpout.ACKED.size() + TracingSpout.FAILED.size() < sentences.size()
                    && System.nanoTime() < deadline) {
                Thread.sleep(100);
            }
            log("acked " + TracingSpout.ACKED.size() + ", failed " + TracingSpout.FAILED.size()
                + " after " + (System.nanoTime() - t0) / 1_000_000 + " ms");
            // The bolts export spans in the background (OTEL_BSP_SCHEDULE_DELAY): wait for them
            // before the topology is killed (ShellBolt destroys the children).
            long spanDeadline = System.nanoTime() + 15_000_000_000L;
            while ((lines(out.resolve("spans-split.jsonl")) < sentences.size()
                    || lines(out.resolve("spans-count.jsonl")) < words)
                    && System.nanoTime() < spanDeadline) {
                Thread.sleep(100);
            }
            log("spans: split " + lines(out.resolve("spans-split.jsonl")) + "/" + sentences.size()
                + ", count " + lines(out.resolve("spans-count.jsonl")) + "/" + words);
            status = TracingSpout.ACKED.size() == sentences.size() && TracingSpout.FAILED.isEmpty() ? 0 : 1;
            // Everything Storm logs after this line is shutdown: killing a topology destroys the
            // ShellBolt children and Storm logs "ShellBolt died" for them without halting.
            log(KILL_MARKER);
            KillOptions kill = new KillOptions();
            kill.set_wait_secs(0);
            cluster.killTopologyWithOpts(NAME, kill);
            Thread.sleep(1000);
        }
        log("done, status " + status);
        System.exit(status);
    }

    private static Map<String, String> env(Path out, String role) {
        return Map.of(
            "TDIST_FILE", out.resolve("spans-" + role + ".jsonl").toString(),
            "OTEL_SERVICE_NAME", "storm-" + role,
            "OTEL_BSP_SCHEDULE_DELAY", "200");
    }

    private static long lines(Path p) throws IOException {
        if (!Files.exists(p)) {
            return 0;
        }
        try (var s = Files.lines(p)) {
            return s.filter(l -> !l.isBlank()).count();
        }
    }

    private static void log(String msg) {
        System.out.println("tdist-storm-cluster: " + msg);
        System.out.flush();
    }
}
