package tdist.storm;

import java.util.Map;
import org.apache.storm.task.ShellBolt;
import org.apache.storm.topology.IRichBolt;
import org.apache.storm.topology.OutputFieldsDeclarer;
import org.apache.storm.tuple.Fields;

/** A tdist Rust bolt run by Storm's own ShellBolt (multilang over the child's stdin/stdout). */
public final class RustBolt extends ShellBolt implements IRichBolt {
    private final String[] outputFields;

    /**
     * @param command absolute path of the bolt binary and its arguments
     * @param env environment of the child (TDIST_FILE, OTEL_SERVICE_NAME, ...)
     * @param outputFields declared output fields; the trace field is last
     */
    RustBolt(String[] command, Map<String, String> env, String... outputFields) {
        super(command);
        this.outputFields = outputFields;
        setEnv(env);
        changeChildCWD(false);
    }

    @Override
    public void declareOutputFields(OutputFieldsDeclarer declarer) {
        declarer.declare(new Fields(outputFields));
    }

    @Override
    public Map<String, Object> getComponentConfiguration() {
        return null;
    }
}
