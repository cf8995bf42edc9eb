package tdist.storm;

import java.io.FileWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.security.SecureRandom;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.storm.spout.SpoutOutputCollector;
import org.apache.storm.task.TopologyContext;
import org.apache.storm.topology.OutputFieldsDeclarer;
import org.apache.storm.topology.base.BaseRichSpout;
import org.apache.storm.tuple.Fields;
import org.apache.storm.tuple.Values;
import org.apache.storm.utils.Utils;

/**
 * Emits {@code count} sentences, each {@code [sentence, _trace]} where {@code _trace} is a B3 single
 * value of a parent context made up here (the spout's span). Emits are reliable (message id
 * {@code m<i>}); every emit is logged to {@code spout.jsonl} and every ack/fail to
 * {@code acks.txt} in the output directory.
 */
public final class TracingSpout extends BaseRichSpout {
    /** Message ids Storm acked / failed (LocalCluster runs in this JVM). */
    static final Set<String> ACKED = ConcurrentHashMap.newKeySet();
    static final Set<String> FAILED = ConcurrentHashMap.newKeySet();

    private final List<String> sentences;
    private transient SpoutOutputCollector collector;
    private transient SecureRandom random;
    private transient Path outDir;
    private int next;

    TracingSpout(List<String> sentences) {
        this.sentences = sentences;
    }

    @Override
    public void open(Map<String, Object> conf, TopologyContext context, SpoutOutputCollector collector) {
        this.collector = collector;
        this.random = new SecureRandom();
        this.outDir = Path.of((String) conf.get(TopologyMain.OUT_DIR_KEY));
    }

    @Override
    public void nextTuple() {
        if (next >= sentences.size()) {
            Utils.sleep(50);
            return;
        }
        int i = next++;
        String msgId = "m" + i;
        String traceId = hex(16);
        String spanId = hex(8);
        String b3 = traceId + "-" + spanId + "-1";
        String sentence = sentences.get(i);
        append("spout.jsonl", String.format(
            "{\"msg_id\":\"%s\",\"trace_id\":\"%s\",\"span_id\":\"%s\",\"b3\":\"%s\",\"sentence\":\"%s\"}",
            msgId, traceId, spanId, b3, sentence));
        collector.emit(new Values(sentence, b3), msgId);
    }

    @Override
    public void ack(Object msgId) {
        ACKED.add(msgId.toString());
        append("acks.txt", "ack " + msgId);
    }

    @Override
    public void fail(Object msgId) {
        FAILED.add(msgId.toString());
        append("acks.txt", "fail " + msgId);
    }

    @Override
    public void declareOutputFields(OutputFieldsDeclarer declarer) {
        declarer.declare(new Fields("sentence", "_trace"));
    }

    private String hex(int bytes) {
        byte[] b = new byte[bytes];
        do {
            random.nextBytes(b);
        } while (allZero(b));
        StringBuilder s = new StringBuilder(bytes * 2);
        for (byte x : b) {
            s.append(String.format("%02x", x & 0xff));
        }
        return s.toString();
    }

    private static boolean allZero(byte[] b) {
        for (byte x : b) {
            if (x != 0) {
                return false;
            }
        }
        return true;
    }

    private synchronized void append(String file, String line) {
        try (FileWriter w = new FileWriter(outDir.resolve(file).toFile(), true)) {
            w.write(line + "\n");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
