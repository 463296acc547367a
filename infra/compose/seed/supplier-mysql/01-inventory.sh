#!/bin/bash
# Seeds the "sonoma-direct" inventory: a stock table counting bottles, a CDC user for Debezium's MySQL connector
# (and Cellar's binlog reader), and Debezium's signal table. Runs once, on an empty data folder.
set -euo pipefail
mysql --protocol=socket -uroot -p"$MYSQL_ROOT_PASSWORD" <<SQL
CREATE TABLE inventory.stock (
  id         INT AUTO_INCREMENT PRIMARY KEY,
  sku        VARCHAR(32) NOT NULL,
  warehouse  VARCHAR(16) NOT NULL,
  bottles    INT NOT NULL,
  updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
);

INSERT INTO inventory.stock (sku, warehouse, bottles) VALUES
  ('SD-CAB-19',  'OAK-1', 480),
  ('SD-CAB-19',  'SFO-2', 120),
  ('SD-ZIN-21',  'OAK-1', 300),
  ('SD-SANC-22', 'LON-1', 96),
  ('SD-SANC-22', 'OAK-1', 60);

CREATE TABLE inventory.debezium_signal (id VARCHAR(64) PRIMARY KEY, type VARCHAR(32) NOT NULL, data TEXT);

-- Debezium's MySQL connector: SELECT, RELOAD (snapshot locks), SHOW DATABASES, REPLICATION SLAVE and CLIENT;
-- INSERT on the signal table so operators can trigger re-snapshots with this user.
CREATE USER 'cellar_cdc'@'%' IDENTIFIED WITH mysql_native_password BY '${SONOMA_MYSQL_PASSWORD}';
GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cellar_cdc'@'%';
GRANT INSERT ON inventory.debezium_signal TO 'cellar_cdc'@'%';
FLUSH PRIVILEGES;
SQL
