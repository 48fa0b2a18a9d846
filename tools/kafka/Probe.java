// tools/kafka/broker's helper, run with the Java source launcher against the
// cached Kafka jars (no build step, no dependency on varve's build):
//   java -cp 'CACHE/*' Probe.java ready BOOTSTRAP       produce one record (acks=all); exit 0 when it is acknowledged
//   java -cp 'CACHE/*' Probe.java topic BOOTSTRAP NAME PARTITIONS   create a topic (exit 0 if it exists)
// A produce, not a port check: a listening socket does not yet mean the
// broker has a metadata quorum and leaders for its partitions.
import java.util.*;
import java.util.concurrent.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class Probe {
  public static void main(String[] a) throws Exception {
    if (a.length < 2) { System.err.println("usage: Probe ready|topic BOOTSTRAP [NAME PARTITIONS]"); System.exit(2); }
    Properties p = new Properties();
    p.put("bootstrap.servers", a[1]);
    p.put("request.timeout.ms", "5000");
    p.put("default.api.timeout.ms", "8000");
    try {
      if (a[0].equals("topic")) {
        createTopic(p, a[2], Integer.parseInt(a[3]));
      } else {
        createTopic(p, "__varve_probe", 1);
        p.put("acks", "all");
        p.put("delivery.timeout.ms", "8000");
        p.put("max.block.ms", "8000");
        p.put("linger.ms", "0");
        try (KafkaProducer<byte[], byte[]> pr = new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
          pr.send(new ProducerRecord<>("__varve_probe", "ready".getBytes())).get(8, TimeUnit.SECONDS);
        }
      }
    } catch (Exception e) {
      Throwable c = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
      System.err.println(c.getClass().getSimpleName() + ": " + c.getMessage());
      System.exit(1);
    }
    System.exit(0);
  }

  static void createTopic(Properties p, String name, int partitions) throws Exception {
    try (Admin admin = Admin.create(p)) {
      admin.createTopics(List.of(new NewTopic(name, partitions, (short) 1))).all().get(8, TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      if (!(e.getCause() instanceof TopicExistsException)) throw e;
    }
  }
}
