#!/bin/sh
# spark-submit a job to the compose cluster's master with the project's connector jars, in client
# mode: the driver runs here, the executors on the workers. The executors connect back to the
# driver, so it advertises this container's address on the compose network. Kafka is reached
# through PIPELINES_BOOTSTRAP_SERVERS unless the job's arguments name --bootstrap-servers.
set -eu
job="$1"
shift
case " $* " in
  *" --bootstrap-servers "*) servers="" ;;
  *) servers="--bootstrap-servers ${PIPELINES_BOOTSTRAP_SERVERS}" ;;
esac
# shellcheck disable=SC2086  # $servers is two words or none, on purpose
exec spark-submit \
  --master "${SPARK_MASTER:-spark://spark-master:7077}" \
  --jars "$(pipelines jars)" \
  --conf "spark.driver.host=$(hostname -i | cut -d' ' -f1)" \
  --conf spark.driver.bindAddress=0.0.0.0 \
  --conf spark.executor.memory=768m \
  "$job" $servers "$@"
