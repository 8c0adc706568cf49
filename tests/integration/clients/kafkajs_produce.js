// Produce one JSON event per Kafka message, keyed by request_id, with KafkaJS's default
// (Java-compatible murmur2) partitioner. Reads "topic\tkey\tvalue" lines from stdin.
const { Kafka, logLevel } = require("kafkajs"); // found through NODE_PATH
const lines = require("fs").readFileSync(0, "utf8").split("\n").filter(Boolean);
const kafka = new Kafka({ clientId: "kjs", brokers: [process.argv[2]], logLevel: logLevel.ERROR });
(async () => {
  const producer = kafka.producer();
  await producer.connect();
  const byTopic = {};
  for (const line of lines) {
    const [topic, key, value] = line.split("\t");
    (byTopic[topic] = byTopic[topic] || []).push({ key, value });
  }
  for (const [topic, messages] of Object.entries(byTopic)) {
    await producer.send({ topic, messages });
  }
  await producer.disconnect();
})().catch((e) => { console.error(e); process.exit(1); });
